//! The one integration-test binary: real server on a loopback port, real store file, real audio.

mod audio;
mod batch;
mod channel;
mod embed;
mod eval;
mod features_cli;
mod load;
mod recurring;
mod service;
mod stream;
mod track;
