//! Screenshots of the wall display's layouts (PNG, 1920×1080) on a live demo auction:
//! a demo master with bidding bots, a terminal server, headless Chromium.
//!
//! ```text
//! cargo run -p lotsync-tests --bin display-shots            # writes docs/display-*.png
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lotsync_tests::browser::Browser;
use lotsync_tests::hall::Hall;

/// Write a screenshot of each wall display layout.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory for the PNG files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"))]
    out: PathBuf,
    /// Page width in CSS pixels.
    #[arg(long, default_value_t = 1920, value_parser = clap::value_parser!(u32).range(640..=7680))]
    width: u32,
    /// Page height in CSS pixels.
    #[arg(long, default_value_t = 1080, value_parser = clap::value_parser!(u32).range(360..=4320))]
    height: u32,
}

/// Layouts: file name, query string, the condition that the page is worth a picture.
const SHOTS: &[(&str, &str, &str)] = &[
    (
        "display-board.png",
        "layout=board",
        r#"const tiles = [...document.querySelectorAll('.tile[data-seq]')];
        return tiles.length >= 4 && tiles.filter((t) => t.querySelector('.bids').textContent !== "0").length >= 3;"#,
    ),
    (
        "display-lot.png",
        "layout=lot",
        r#"return document.querySelectorAll('.single[data-seq] .bid:not(.none)').length >= 3;"#,
    ),
    (
        "display-rotate.png",
        "layout=rotate&every=8",
        r#"return document.querySelectorAll('.single[data-seq] .bid:not(.none)').length >= 1;"#,
    ),
];

/// How long a layout may take to be worth a picture (the bots bid every few seconds).
const READY: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let master = mock_master::Master::builder()
        .in_memory()
        .demo(true)
        .simulated_bidders(6)
        .seed(7)
        .start()
        .await?;
    let hall = Hall::start(
        master.url(),
        master.terminal_token(),
        "127.0.0.1:0",
        Duration::from_secs(2),
    )
    .await?;
    let mut browser = Browser::start(args.width, args.height).await?;
    browser.viewport(args.width, args.height).await?;
    for (file, query, ready) in SHOTS {
        eprintln!("{query}: waiting for bids on the page");
        browser.goto(&hall.display_url(query)).await?;
        browser
            .wait_for(ready, READY)
            .await
            .with_context(|| format!("layout {query} never filled"))?;
        // A moment without a price highlight, if the bots leave one.
        let calm = "return !document.querySelector('.flash');";
        if browser
            .wait_for(calm, Duration::from_secs(20))
            .await
            .is_err()
        {
            eprintln!("{query}: a price is highlighted in the picture");
        }
        let png = browser.screenshot().await?;
        let path = args.out.join(file);
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    browser.close().await;
    hall.stop().await;
    master.shutdown().await;
    Ok(())
}
