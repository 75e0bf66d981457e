//! What a call is, below everything else: who makes it, how it can fail,
//! and the handles an agent holds for its calls in flight.

use golem_schema::SchemaValue;
use golem_schema::wit::wire;
use tokio::sync::oneshot;

/// Why a call did not return a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The agent answered with an error of its own (bad input, unknown method).
    #[error("{0}")]
    Agent(String),
    /// No agent type of that name, or a constructor that does not fit it.
    #[error("{0}")]
    NotFound(String),
    /// The agent trapped, failed to start, or did not answer in time.
    #[error("{0}")]
    Failed(String),
}

/// Who makes a call.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A request to the HTTP gateway.
    Http,
    /// Another agent.
    Agent {
        /// Its agent id.
        agent_id: String,
        /// Its component's id.
        component_id: uuid::Uuid,
    },
}

/// What a call answers: the method's value (none for unit), or why not.
pub type Answer = Result<Option<wire::SchemaValueTree>, CallError>;

/// A `wasm-rpc` client: the agent it calls.
pub struct RpcClient {
    /// The callee's type.
    pub agent_type: String,
    /// The callee's constructor parameters.
    pub constructor: SchemaValue,
    /// The callee's agent id.
    pub agent_id: String,
}

/// A call in flight (`future-invoke-result`).
pub struct PendingCall {
    /// The answer, until `get` takes it.
    pub answer: Option<oneshot::Receiver<Answer>>,
}
