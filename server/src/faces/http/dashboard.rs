//! The dashboard's files, inside the binary: these machines have no internet, so no CDN.
//! uPlot, its charting library, is fetched from npm by the build (`build.rs`).

use axum::http::header;
use axum::response::IntoResponse;

pub async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard/index.html"),
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("dashboard/app.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("dashboard/style.css"),
    )
}

pub async fn uplot_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        include_str!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js")),
    )
}

pub async fn uplot_style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        include_str!(concat!(env!("OUT_DIR"), "/uPlot.min.css")),
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../../../docs/openapi.yaml"),
    )
}
