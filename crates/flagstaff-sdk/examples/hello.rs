//! Evaluates one flag for one user, then prints every change until Ctrl-C.
//!
//! ```sh
//! FLAGSTAFF_SDK_KEY=sdk-... FLAGSTAFF_URL=http://127.0.0.1:8030 \
//!     cargo run -p flagstaff-sdk --example hello -- new-checkout
//! ```

use std::time::Duration;

use flagstaff_sdk::{Client, Config, ContextBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sdk_key = std::env::var("FLAGSTAFF_SDK_KEY").map_err(|_| "set FLAGSTAFF_SDK_KEY")?;
    let url = std::env::var("FLAGSTAFF_URL").unwrap_or_else(|_| "http://127.0.0.1:8030".into());
    let flag = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "new-checkout".into());

    let client = Client::new(Config::builder(sdk_key).base_uri(&url).build()?)?;
    if let Err(e) = client.wait_for_initialization(Duration::from_secs(5)).await {
        eprintln!("{e}; evaluations return the default until the flags arrive");
    }
    let ann = ContextBuilder::new("ann")
        .name("Ann")
        .set("country", "NZ")
        .set("email", "ann@example.com")
        .private("email")
        .build()?;
    let detail = client.bool_variation_detail(&ann, &flag, false);
    println!("{flag} for ann: {} ({:?})", detail.value, detail.reason);

    let mut changes = client.flag_changes();
    loop {
        tokio::select! {
            change = changes.recv() => {
                if let Ok(change) = change {
                    let value = client.json_variation(&ann, &change.key, serde_json::Value::Null);
                    println!("{} changed: ann now gets {value}", change.key);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Delivers the evaluations' summary to the server before exiting.
    client.close().await;
    Ok(())
}
