//! Pagination (`page_size`, `page_token`, `has_more`) and the id-type parameters.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::Query;
use crate::error::ApiError;

/// `user_id_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIdType {
    OpenId,
    UnionId,
    UserId,
}

/// `department_id_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeptIdType {
    Open,
    Custom,
}

pub fn user_id_type(q: &Query) -> Result<UserIdType, ApiError> {
    match q.get("user_id_type") {
        None | Some("open_id") => Ok(UserIdType::OpenId),
        Some("union_id") => Ok(UserIdType::UnionId),
        Some("user_id") => Ok(UserIdType::UserId),
        Some(v) => Err(ApiError::field(
            "user_id_type",
            v,
            "must be open_id, union_id or user_id",
        )),
    }
}

pub fn dept_id_type(q: &Query) -> Result<DeptIdType, ApiError> {
    match q.get("department_id_type") {
        None | Some("open_department_id") => Ok(DeptIdType::Open),
        Some("department_id") => Ok(DeptIdType::Custom),
        Some(v) => Err(ApiError::field(
            "department_id_type",
            v,
            "must be open_department_id or department_id",
        )),
    }
}

/// Reads `page_size` (default, max) and `page_token` (an opaque offset).
pub fn params(q: &Query, default: usize, max: usize) -> Result<(usize, usize), ApiError> {
    let size = match q.get("page_size") {
        None | Some("") => default,
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| ApiError::field("page_size", v, "must be an integer"))?;
            if n < 1 {
                return Err(ApiError::field("page_size", v, "the min value is 1"));
            }
            if n as usize > max {
                return Err(ApiError::field(
                    "page_size",
                    v,
                    &format!("the max value is {max}"),
                ));
            }
            n as usize
        }
    };
    let offset = match q.get("page_token") {
        None | Some("") => 0,
        Some(t) => decode(t).ok_or_else(|| ApiError::new(400, 40012, "page token is invalid"))?,
    };
    Ok((size, offset))
}

fn decode(t: &str) -> Option<usize> {
    let raw = B64.decode(t).ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("emu-offset:")?.parse().ok()
}

pub fn encode(offset: usize) -> String {
    B64.encode(format!("emu-offset:{offset}"))
}

/// Slices `items` and adds `has_more`/`page_token` to `data`.
pub fn slice<T: Clone>(
    items: &[T],
    size: usize,
    offset: usize,
    data: &mut Map<String, Value>,
) -> Vec<T> {
    let end = offset.saturating_add(size).min(items.len());
    let page = items
        .get(offset.min(items.len())..end)
        .unwrap_or(&[])
        .to_vec();
    let more = end < items.len();
    data.insert("has_more".into(), json!(more));
    if more {
        data.insert("page_token".into(), json!(encode(end)));
    }
    page
}
