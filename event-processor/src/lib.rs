//! placeholder
#[cfg(target_family = "wasm")]
mod agent {
    use golem_rust::{agent_definition, agent_implementation};

    #[agent_definition]
    pub trait Probe {
        fn new(id: String) -> Self;
        fn ping(&self) -> String;
    }

    struct ProbeImpl {
        id: String,
    }

    #[agent_implementation]
    impl Probe for ProbeImpl {
        fn new(id: String) -> Self {
            Self { id }
        }
        fn ping(&self) -> String {
            self.id.clone()
        }
    }
}
