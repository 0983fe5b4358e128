//! The OpenAPI document, served at `/api/openapi.json` (to logged-in callers).

use axum::Json;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::session::Caller;

#[derive(OpenApi)]
#[openapi(
    info(title = "Panoptes API", description = "Network video recorder with real-time analytics."),
    paths(
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
        crate::routes::access::login,
        crate::routes::access::logout,
        crate::routes::access::me,
        crate::routes::access::setup,
        crate::routes::access::create_token,
        crate::routes::access::revoke_token,
        crate::routes::cameras::list,
        crate::routes::cameras::create,
        crate::routes::cameras::update,
        crate::routes::cameras::remove,
        crate::routes::cameras::status,
        crate::routes::cameras::detect,
        crate::routes::events::list,
        crate::routes::events::one,
        crate::routes::events::review,
        crate::routes::events::counts,
        crate::routes::events::stream,
        crate::routes::events::snapshot,
        crate::routes::recordings::list,
        crate::routes::recordings::spans,
        crate::routes::recordings::file,
        crate::routes::recordings::export,
        crate::routes::recordings::export_file,
        crate::routes::users::list,
        crate::routes::users::create,
        crate::routes::users::update,
        crate::routes::users::disable,
        crate::routes::users::audit_log,
    ),
    modifiers(&Security),
    security(("session" = []), ("bearer" = []))
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::COOKIE,
                "Session cookie from /api/auth/login; unsafe methods also need the X-CSRF-Token header",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // What `crate::extract` answers for a request it cannot read, on every operation
        // that reads one: 422 for bad parameters or bodies, 415 for a body that is not JSON.
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.keys().any(|k| k.starts_with("application/json")));
                if has_params || json_body {
                    add_error(op, "422", "A parameter or the body is invalid (`field` names it)");
                }
                if json_body {
                    add_error(op, "415", "The body is not `application/json`");
                }
            }
        }
    }
}

fn add_error(op: &mut utoipa::openapi::path::Operation, status: &str, description: &str) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    op.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build()
            .into()
    });
}

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/api/openapi.json", get(document))
}

async fn document(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/auth/login",
            "/api/cameras",
            "/api/cameras/{id}",
            "/api/cameras/status",
            "/api/tokens/{id}",
            "/api/users",
            "/api/users/{id}",
            "/api/audit",
        ] {
            assert!(paths.iter().any(|x| x.as_str() == p), "{p} missing from {paths:?}");
        }
        let json = serde_json::to_string(&doc).unwrap_or_default();
        assert!(json.contains("StreamStatus") && json.contains("ErrorBody"), "schemas present");
    }
}
