//! Event pushes (placeholder).

#[derive(Debug)]
pub struct Hub {}

impl Hub {
    pub fn new(_seed: u64) -> Self {
        Self {}
    }
}
