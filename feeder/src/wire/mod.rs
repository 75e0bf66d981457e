//! The feeder's own Pulsar client, on the Pulsar binary protocol (with the
//! `pulsar` crate's protocol types): what pulsar-rs cannot do for the feeder.
//! Messages that cannot be decoded are handed over with their id and bytes
//! (so that they can be dead-lettered), Snappy is read raw (as the Java,
//! C++ and Python clients write it) or framed, acknowledgements are grouped
//! several ids per frame, TLS takes client certificates and can skip host
//! name or certificate verification, and a subscription can be moved (seek)
//! or asked to deliver messages again (negative acknowledgement).
//!
//! Layout: [`frame`] (the wire format), [`payload`] (decompression and
//! batches), [`tls`], [`url`], [`auth`], [`connection`] (handshake,
//! requests, routing), [`client`] (connections by URL, lookup, partitions, topics of a
//! namespace), [`consumer`] (one subscription's consumers), [`acks`]
//! (acknowledgement bookkeeping and grouping) and [`producer`].

pub mod acks;
pub mod auth;
pub mod client;
pub mod connection;
pub mod consumer;
pub mod frame;
pub mod payload;
pub mod producer;
pub mod tls;
pub mod url;
