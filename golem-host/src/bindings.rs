//! Host-side bindings of the agent component world (`wit/host.wit`).

wasmtime::component::bindgen!({
    path: "wit",
    world: "timeline:golem-host/agent-component",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "golem:core/types@2.0.0": golem_schema::wit::wire,
        "golem:agent/host@2.0.0.wasm-rpc": crate::call::RpcClient,
        "golem:agent/host@2.0.0.future-invoke-result": crate::call::PendingCall,
    },
    require_store_data_send: true,
});
