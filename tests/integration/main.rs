//! The one integration-test binary: real server on a loopback port, real store file, real audio.
mod embed;
mod service;
