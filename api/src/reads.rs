//! Reading a key's per-key nodes on Golem: the one way every agent does it.
//!
//! A derived node is evaluated from the leaves below it: `Core` gives the
//! node's [`Evaluation`] (read-only, cached), every leaf's `EventProcessor`
//! is asked for its output at once (concurrent calls), and the evaluation
//! runs here, the same code the local runtime runs. One round of calls to the
//! leaves, whatever the depth of the expression. (A call that fails at the
//! RPC level traps the caller, as Golem's generated clients do; Golem then
//! retries the invocation.)

use futures::future::join_all;
use timeline::{Evaluation, NodeId, Output, PlanNode};

use crate::agents::{CoreClient, EventProcessorClient};

/// The definition of node `id`, asked of `Core`.
pub async fn node_definition(id: &str) -> Result<PlanNode, String> {
    let text = CoreClient::get()
        .node(id.to_string())
        .await
        .ok_or_else(|| format!("no job runs node `{id}`"))?;
    serde_json::from_str(&text).map_err(|e| format!("bad definition of `{id}`: {e}"))
}

/// How to evaluate `nodes`, asked of `Core`.
pub async fn evaluation(nodes: &[NodeId]) -> Result<Evaluation, String> {
    let text = CoreClient::get()
        .evaluation(nodes.iter().map(NodeId::to_string).collect())
        .await?;
    serde_json::from_str(&text).map_err(|e| format!("bad evaluation from Core: {e}"))
}

/// The outputs of `key`'s leaves, read from their agents concurrently.
pub async fn leaf_outputs(key: &str, leaves: &[NodeId]) -> Result<Vec<Output>, String> {
    let reads = leaves.iter().map(|leaf| async move {
        let text = EventProcessorClient::get(leaf.to_string(), key.to_string())
            .output()
            .await;
        serde_json::from_str::<Output>(&text).map_err(|e| format!("bad output of `{leaf}`: {e}"))
    });
    join_all(reads).await.into_iter().collect()
}

/// `key`'s outputs of the per-key nodes `nodes`, in order.
pub async fn outputs(key: &str, nodes: &[NodeId]) -> Result<Vec<Output>, String> {
    let eval = evaluation(nodes).await?;
    let leaves = leaf_outputs(key, eval.leaves()).await?;
    Ok(eval.evaluate(&leaves))
}
