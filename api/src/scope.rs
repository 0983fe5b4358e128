//! Which cameras a user may see: admins all; others the cameras granted to them.

use std::collections::HashSet;

use panoptes_core::CameraId;
use panoptes_storage::auth::AuthUser;
use panoptes_storage::users::Role;

use crate::{ApiError, AppState};

/// The cameras a caller may see.
#[derive(Debug, Clone)]
pub enum CameraScope {
    /// Every camera.
    All,
    /// Only these.
    Only(HashSet<CameraId>),
}

impl CameraScope {
    /// Whether `camera` is visible.
    pub fn allows(&self, camera: &CameraId) -> bool {
        match self {
            CameraScope::All => true,
            CameraScope::Only(set) => set.contains(camera),
        }
    }
}

/// Loads the caller's scope.
pub async fn cameras_visible(state: &AppState, user: &AuthUser) -> Result<CameraScope, ApiError> {
    if user.role == Role::Admin {
        return Ok(CameraScope::All);
    }
    let granted = panoptes_storage::auth::granted_cameras(&state.inner.pool, user.id).await?;
    Ok(CameraScope::Only(granted.into_iter().filter_map(|c| CameraId::new(c).ok()).collect()))
}
