//! Who is calling an internal API: a platform service with a service token (`api.tokens`), or
//! a person with a session from auth. Sessions are EdDSA-signed JWTs that any service verifies
//! offline against auth's public keys (from the shared database, or from auth's
//! `/.well-known/jwks.json` for services outside this process family), and a revoked session
//! (logout, refresh-token reuse) stops working everywhere within a poll interval.

mod gate;
mod verifier;

pub use gate::{bearer, session_token, Caller, Gate, SESSION_COOKIE};
pub use verifier::{Claims, KeySource, Verifier, VerifierOptions, VerifyError, AUDIENCE};
