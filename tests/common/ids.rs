//! Two fixed GUIDs, for tests that send ids (correlation, request, path) and look for them again.

pub const GUID_A: &str = "8a53b025-d5be-4d98-ab20-229d1813de76";
pub const GUID_B: &str = "0e5fc923-8e3c-4560-9100-ce7283c3e081";
