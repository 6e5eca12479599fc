//! Paths inside a volume: resolving `/etc/network/interfaces` to a file,
//! following symlinks the way the kernel would (relative to their
//! directory, absolute ones from the volume's root, never out of it), and
//! NTFS's `PATH:STREAM` names of alternate data streams.

use std::collections::VecDeque;

use super::{DirEntry, Entry, FileError, Kind, Meta, Tree};
use crate::error::Result;

/// Symlinks followed at most while resolving one path (Linux's limit).
pub const MAX_SYMLINKS: u32 = 40;

/// A path resolved to a file.
#[derive(Clone, Debug)]
pub struct Found {
    /// The file.
    pub meta: Meta,
    /// Its path from the root, as resolved ("/" for the root).
    pub path: String,
    /// The name of the named stream asked for (`PATH:STREAM`).
    pub stream: Option<String>,
}

/// Joins a directory path and a name.
pub fn join(dir: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Splits a path into its names, dropping empty ones and `.`.
fn components(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
}

/// Resolves `path` (absolute or relative to the root) in `tree`. Symlinks
/// met on the way are followed; the last component is followed only with
/// `follow_last` (as `cat` does, and `ls` does not) or a trailing `/`.
/// `..` never climbs above the root.
pub fn resolve(tree: &dyn Tree, path: &str, follow_last: bool) -> Result<Found> {
    // `link/` names the directory the link points to, as in a shell.
    let follow_last = follow_last || path.ends_with('/');
    let root = tree.root()?;
    // The directories from the root down to the current one, with names.
    let mut stack: Vec<(Meta, Vec<u8>)> = Vec::new();
    let mut todo: VecDeque<Vec<u8>> = components(path.as_bytes()).collect();
    let mut links = 0u32;
    let here = |stack: &[(Meta, Vec<u8>)]| -> String {
        let mut p = String::new();
        for (_, n) in stack {
            p.push('/');
            p.push_str(&String::from_utf8_lossy(n));
        }
        if p.is_empty() { "/".to_string() } else { p }
    };
    while let Some(name) = todo.pop_front() {
        if name == b".." {
            stack.pop();
            continue;
        }
        let dir = stack.last().map_or(&root, |(m, _)| m).clone();
        let dir_path = here(&stack);
        if dir.kind != Kind::Dir {
            return Err(FileError::NotADirectory { path: dir_path }.into());
        }
        let last = todo.is_empty();
        let Some(entry) = find(tree.read_dir(&dir, &dir_path)?, &name)? else {
            if last && let Some(found) = stream_of(tree, &dir, &dir_path, &name)? {
                return Ok(found);
            }
            return Err(FileError::NotFound {
                path: path.to_string(),
            }
            .into());
        };
        if entry.meta.kind == Kind::Symlink && (!last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(FileError::Corrupt {
                    path: path.to_string(),
                    what: "path".into(),
                    detail: format!("more than {MAX_SYMLINKS} symbolic links to follow"),
                }
                .into());
            }
            let link_path = join(&dir_path, &entry.name);
            let target = tree.read_link(&entry.meta, &link_path)?;
            if target.first() == Some(&b'/') {
                stack.clear();
            }
            for c in components(&target).collect::<Vec<_>>().into_iter().rev() {
                todo.push_front(c);
            }
            continue;
        }
        stack.push((entry.meta, entry.name));
    }
    let path = here(&stack);
    let meta = stack.pop().map_or(root, |(m, _)| m);
    Ok(Found {
        meta,
        path,
        stream: None,
    })
}

/// The entry named `name` of a listing; the error of a bad entry of that
/// name (its file cannot be read).
pub fn find(entries: Vec<DirEntry>, name: &[u8]) -> Result<Option<Entry>> {
    for e in entries {
        match e {
            Ok(e) if e.name == name => return Ok(Some(e)),
            Err(bad) if bad.name == name => return Err(*bad.error),
            _ => {}
        }
    }
    Ok(None)
}

/// `NAME:STREAM` in `dir`: the named stream of file NAME, if the
/// filesystem has streams and NAME has that one.
fn stream_of(tree: &dyn Tree, dir: &Meta, dir_path: &str, name: &[u8]) -> Result<Option<Found>> {
    let Some(colon) = name.iter().position(|&b| b == b':') else {
        return Ok(None);
    };
    let (base, stream) = (&name[..colon], &name[colon + 1..]);
    let Some(entry) = find(tree.read_dir(dir, dir_path)?, base)? else {
        return Ok(None);
    };
    let path = join(dir_path, base);
    let stream = String::from_utf8_lossy(stream);
    let Some(s) = tree
        .streams(&entry.meta, &path)?
        .into_iter()
        .find(|s| s.name == stream)
    else {
        return Ok(None);
    };
    let mut meta = entry.meta;
    meta.size = s.size;
    meta.nlink = 1;
    Ok(Some(Found {
        meta,
        path: format!("{path}:{stream}"),
        stream: Some(s.name),
    }))
}

/// A reader of what `found` names: the file, or its named stream.
pub fn open<'a>(tree: &'a dyn Tree, found: &Found) -> Result<Box<dyn super::FileRead + 'a>> {
    match &found.stream {
        None => tree.open(&found.meta, &found.path),
        Some(s) => {
            let base = &found.path[..found.path.len() - s.len() - 1];
            tree.open_stream(&found.meta, base, s)
        }
    }
}
