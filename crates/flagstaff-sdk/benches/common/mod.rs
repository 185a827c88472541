//! Both SDKs connected to the same peer, shared by the differential test and the benchmark.

use std::time::Duration;

use launchdarkly_sdk_transport::HyperTransport;
use launchdarkly_server_sdk as ld;

/// LaunchDarkly's Rust SDK, streaming from `base` over plain HTTP (its default transport needs
/// TLS features that build C code), with events on or off.
pub fn launchdarkly_client(base: &str, events: bool) -> ld::Client {
    let mut endpoints = ld::ServiceEndpointsBuilder::new();
    endpoints
        .streaming_base_url(base)
        .polling_base_url(base)
        .events_base_url(base);
    let mut source = ld::StreamingDataSourceBuilder::<HyperTransport>::new();
    source.transport(HyperTransport::new().expect("an HTTP transport"));
    let builder = ld::ConfigBuilder::new("sdk-key")
        .service_endpoints(&endpoints)
        .data_source(&source);
    let builder = if events {
        let mut processor = ld::EventProcessorBuilder::<HyperTransport>::new();
        processor
            .transport(HyperTransport::new().expect("an HTTP transport"))
            .flush_interval(Duration::from_secs(3600));
        builder.event_processor(&processor)
    } else {
        builder.event_processor(&ld::NullEventProcessorBuilder::new())
    };
    let client = ld::Client::build(builder.build().expect("a valid configuration"))
        .expect("the client builds");
    client.start_with_default_executor();
    client
}

/// flagstaff-sdk streaming from `base`, with events on or off.
pub fn flagstaff_client(base: &str, events: bool) -> flagstaff_sdk::Client {
    let config = flagstaff_sdk::Config::builder("sdk-key")
        .base_uri(base)
        .events(flagstaff_sdk::EventsConfig {
            enabled: events,
            flush_interval: Duration::from_secs(3600),
            ..flagstaff_sdk::EventsConfig::default()
        })
        .build()
        .expect("a valid configuration");
    flagstaff_sdk::Client::new(config).expect("inside a runtime")
}
