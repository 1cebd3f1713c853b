//! The one integration-test binary: real server on a loopback port, real store file, real audio.

mod audio;
mod embed;
mod features_cli;
mod eval;
mod recurring;
