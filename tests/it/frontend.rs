//! PostgreSQL frontend messages written byte by byte, for tests that send what no driver
//! would: malformed messages and the protocol fuzzer's mutations.

/// A frontend message: type byte, length, body.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn startup() -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec(); // protocol 3.0
    for s in ["user", "flashsql", "database", "flashsql"] {
        body.extend(cstr(s));
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(sql));
    body.extend(0i16.to_be_bytes());
    message(b'P', &body)
}

/// A Bind with the given counts written as they are (possibly lying about what follows).
pub fn bind(
    statement: &str,
    formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Vec<u8> {
    let mut body = cstr("");
    body.extend(cstr(statement));
    body.extend((formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend(f.to_be_bytes());
    }
    body.extend((params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                body.extend((v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
            None => body.extend((-1i32).to_be_bytes()),
        }
    }
    body.extend((result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend(f.to_be_bytes());
    }
    message(b'B', &body)
}

pub fn execute(max_rows: i32) -> Vec<u8> {
    let mut body = cstr("");
    body.extend(max_rows.to_be_bytes());
    message(b'E', &body)
}

pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// A simple-protocol query.
pub fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &cstr(sql))
}

/// Describe of the unnamed portal.
pub fn describe_portal() -> Vec<u8> {
    let mut body = vec![b'P'];
    body.extend(cstr(""));
    message(b'D', &body)
}

/// One CopyData message.
pub fn copy_data(bytes: &[u8]) -> Vec<u8> {
    message(b'd', bytes)
}

pub fn copy_done() -> Vec<u8> {
    message(b'c', &[])
}

pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}

/// A request sent before the startup packet (SSLRequest 80877103, GSSENCRequest 80877104).
pub fn request(code: i32) -> Vec<u8> {
    let mut out = 8i32.to_be_bytes().to_vec();
    out.extend(code.to_be_bytes());
    out
}
