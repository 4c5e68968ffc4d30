//! Shared by the integration-test binaries that need the real models: the embedded
//! default configuration and one pipeline per test binary (loading models takes a while).
//! Included with `#[path]` so that it is not a test binary of its own.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use facegate::config::{self, Config};
use facegate::runtime::Runtime;
use facegate::vision::{Pipeline, PipelineOptions};

pub fn default_config() -> Config {
    config::merge(None, "-", &HashMap::<String, String>::new()).expect("default config")
}

pub fn pipeline() -> Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let config = default_config();
            let runtime = Runtime::locate_and_load(config.runtime_library()).expect("LiteRT");
            let options = PipelineOptions {
                workers: 2,
                ..config.pipeline_options()
            };
            Arc::new(Pipeline::load(&runtime, options).expect("models"))
        })
        .clone()
}
