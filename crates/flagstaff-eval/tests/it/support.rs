//! Helpers shared by the integration tests (from `flagstaff-testkit`).

pub use flagstaff_testkit::{json_equal, workspace_root};
