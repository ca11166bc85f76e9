//! The API's contract as an OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` annotations and served at
//! `/api/v1/openapi.json`. [`api_routes`](super::api_routes) builds the
//! router and the document from the same `routes!` list, so a route is
//! served only if it is documented; the tests below check that nothing
//! bypasses that list and that every documented operation is served.

use super::API_ROOT;
use axum::Json;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::OpenApi;

/// Every error answer: `{"error": "<code>", "message": "<sentence>"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable code, e.g. `not_found`, `invalid_field`, `conflict`.
    error: String,
    /// What went wrong and how to fix it, for people.
    message: String,
}

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth API",
        description = "The control plane's HTTP API (SPEC §4). Authenticate with \
            `Authorization: Bearer berth_api_...` (from POST /api/v1/login or the admin-token \
            file). Errors are always JSON: {\"error\": CODE, \"message\": SENTENCE}. A \
            workspace you may not see answers 404, exactly like one that does not exist. \
            Paths under /api/v1/edge/ and /api/v1/agent/ are for berth's own edges and agents.",
        license(name = "see the repository")
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "account", description = "Signing in, and one's own account"),
        (name = "users", description = "Users (site admins)"),
        (name = "workspaces", description = "Workspaces and their agents"),
        (name = "sharing", description = "Ports, shares, named apps and share links"),
        (name = "regions", description = "Regions and their edges"),
        (name = "internal", description = "Used by berth's own regional edges and agents"),
    )
)]
pub(crate) struct ApiDoc;

/// The whole document, built once: [`ApiDoc`] with the routes' paths
/// under `/api/v1`.
pub(crate) fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = super::api_routes().into_openapi();
        doc.paths.paths = std::mem::take(&mut doc.paths.paths)
            .into_iter()
            .map(|(path, item)| (format!("{API_ROOT}{path}"), item))
            .collect();
        serde_json::to_value(&doc).expect("the OpenAPI document serializes")
    })
}

/// Serves the document.
#[utoipa::path(get, path = "/openapi.json", tag = "account",
    summary = "This document: the API as OpenAPI 3.1 (no token needed)",
    responses((status = 200, description = "The OpenAPI document")),
)]
pub(crate) async fn serve() -> Json<&'static serde_json::Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::tests::Harness;
    use axum::http::{Method, StatusCode};

    #[test]
    fn it_is_openapi_3_1_with_every_path_under_api_v1() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() > 20, "{paths:?}");
        for (path, item) in paths {
            assert!(path.starts_with("/api/v1/"), "{path}");
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                    "{method} {path} has no summary"
                );
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
                // Each {param} in the path is declared.
                for param in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == param && p["in"] == "path")
                    });
                    assert!(declared, "{method} {path}: {{{param}}} is not declared");
                }
            }
        }
    }

    #[test]
    fn the_edge_and_agent_paths_are_the_protocol_constants() {
        use crate::protocol::{edge_api, regions::AGENT_REGIONS};
        let paths = document()["paths"].as_object().unwrap();
        for p in [
            edge_api::HELLO,
            edge_api::HEARTBEAT,
            edge_api::WATCH,
            edge_api::REDEEM,
            edge_api::EXCHANGE,
            edge_api::CERTIFICATE,
            edge_api::ACTIVITY,
            edge_api::WAKE,
            AGENT_REGIONS,
        ] {
            assert!(paths.contains_key(&format!("{API_ROOT}{p}")), "{p}");
        }
    }

    /// The router's API routes come only from `routes!` lists (which put
    /// them in the document): a plain `.route(...)`, `.nest(...)` or
    /// `.merge(...)` in `api_routes` would serve a route the document lacks.
    #[test]
    fn every_route_of_the_router_is_in_the_document() {
        let source = include_str!("mod.rs");
        let start = source
            .find("pub(crate) fn api_routes()")
            .expect("api_routes");
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("end of api_routes")];
        for bypass in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".merge(",
            ".nest_service(",
        ] {
            assert!(
                !body.contains(bypass),
                "api_routes uses {bypass}: routes must go through routes!(...) so the \
                 OpenAPI document has them"
            );
        }
        let handlers: usize = body
            .split("routes!(")
            .skip(1)
            .map(|s| {
                s[..s.find(')').unwrap()]
                    .split(',')
                    .filter(|h| !h.trim().is_empty())
                    .count()
            })
            .sum();
        let operations: usize = document()["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            handlers, operations,
            "each handler in api_routes is one documented operation"
        );
    }

    /// And every documented operation is served: none falls through to the
    /// "no such API endpoint" 404 or the 405.
    #[tokio::test]
    async fn every_documented_operation_is_served() {
        let h = Harness::new().await;
        let paths = document()["paths"].as_object().unwrap().clone();
        for (path, item) in paths {
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            for method in item.as_object().unwrap().keys() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let (status, body) = h.call(m, &concrete, None, None).await;
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !(status == StatusCode::NOT_FOUND && body["message"] == "no such API endpoint"),
                    "{method} {path} is documented but not served"
                );
            }
        }
        let (status, doc) = h
            .call(Method::GET, "/api/v1/openapi.json", None, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&doc, document());
    }
}
