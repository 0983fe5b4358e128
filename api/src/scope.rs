//! Which cameras a user may see: admins all; others the cameras granted to them.

use panoptes_storage::auth::AuthUser;
pub use panoptes_storage::cameras::Access as CameraScope;

use crate::{ApiError, AppState};

/// Loads the caller's scope.
pub async fn cameras_visible(state: &AppState, user: &AuthUser) -> Result<CameraScope, ApiError> {
    Ok(CameraScope::for_user(&state.inner.pool, user.id, user.role).await?)
}
