//! Configuration: placeholder until the config module lands (see issue #3).
