//! Credentials and access decisions: token minting and hashing, password hashing,
//! and the pure function that decides whether a visitor may reach a port.
//!
//! Nothing here does I/O; the edge and control call into it with what they know.

pub mod cookie;
pub mod decide;
pub mod email;
pub mod github;
pub mod inspect;
pub mod jwt;
pub mod link_cookie;
pub mod oidc;
pub mod origin;
pub mod password;
pub mod signin;
pub mod token;
pub mod wake;
pub mod webhook;

pub use crate::secret::Secret;
pub use decide::{authorize, Decision, LinkGrant, ShareLevel, Target, Visitor};
pub use token::{TokenHash, TokenKind};
