//! The `com.victronenergy.BusItem` objects (`victron-dbus.md` §2.2–2.4): one [`BusItem`] per
//! path, a [`TreeNode`] per intermediate path (`/Dc`, `/Dc/0`) and the [`Root`] at `/`.
//!
//! All objects of a service read one shared [`Items`] table, so a publish updates every object at
//! once and a reconnect re-registers objects that already hold the latest values. Handlers never
//! block on the bus: an accepted `/CustomName` write is handed to the service over a channel.
//!
//! A call on a path that has no object is answered by zbus' `ObjectServer` itself with
//! `org.freedesktop.DBus.Error.UnknownObject`, the error veutil tolerates for not-yet-present paths
//! (§2.3; pinned by `tests/dbus_service.rs`).

use super::marshal;
use super::paths::{Item, Items, CUSTOM_NAME};
use super::set_value;
use super::value::Value;
use super::writable;
use crate::protocol::writes::BmsCommand;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::{mpsc, watch};
use zbus::zvariant::{self, OwnedValue};
use zbus::{interface, Connection};

/// Interface name of every Victron value object.
pub const BUS_ITEM: &str = "com.victronenergy.BusItem";

/// Longest `/CustomName` accepted, in characters.
pub const MAX_CUSTOM_NAME_CHARS: usize = 64;

/// An accepted `/CustomName` write, with the connection it came in on (used to persist it).
#[derive(Debug, Clone)]
pub(crate) struct CustomNameWrite {
    pub(crate) name: String,
    pub(crate) connection: Option<Connection>,
}

/// State shared by all objects of one service.
#[derive(Debug)]
pub(crate) struct Shared {
    items: Mutex<Items>,
    /// The latest accepted `/CustomName` write (bounded: a flood of writes keeps only the last,
    /// the one that must be stored).
    writes: watch::Sender<Option<CustomNameWrite>>,
    commands: Option<mpsc::Sender<BmsCommand>>,
    /// Set by a `/History/Clear` write; the task that owns the counters takes it on its next
    /// cycle (writes in between coalesce).
    pub(crate) history_clear: AtomicBool,
    /// Writes that changed the table, over its life ([`Shared::writes_taken`]).
    writes_taken: AtomicU64,
}

impl Shared {
    pub(crate) fn new(items: Items, writes: watch::Sender<Option<CustomNameWrite>>) -> Self {
        Self {
            items: Mutex::new(items),
            writes,
            commands: None,
            history_clear: AtomicBool::new(false),
            writes_taken: AtomicU64::new(0),
        }
    }

    /// Accepted `/Settings/*` writes go to `commands` (the port's poll loop).
    pub(crate) fn with_commands(mut self, commands: Option<mpsc::Sender<BmsCommand>>) -> Self {
        self.commands = commands;
        self
    }

    /// The table. A panic while holding the lock cannot leave it half-written (every writer
    /// replaces whole entries), so a poisoned lock is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Items> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many client writes changed the table so far (a publish that remembers the values it
    /// last wrote must look again after one: `paths::Shadow`).
    pub(crate) fn writes_taken(&self) -> u64 {
        self.writes_taken.load(Ordering::Relaxed)
    }

    /// Applies a `SetValue` on `path`: the return code, and the new item when it changed.
    pub(crate) fn write(&self, path: &str, value: &zvariant::Value<'_>) -> (i32, Option<Item>) {
        let (code, changed) = self.apply_write(path, value);
        if changed.is_some() {
            self.writes_taken.fetch_add(1, Ordering::Relaxed);
        }
        (code, changed)
    }

    fn apply_write(&self, path: &str, value: &zvariant::Value<'_>) -> (i32, Option<Item>) {
        if writable::is_writable_setting(path) {
            return self.write_setting(path, value);
        }
        if path == writable::HISTORY_CLEAR && self.lock().contains_key(path) {
            return match writable::check_history_clear(value) {
                Ok(true) => {
                    tracing::info!(path, "history clear requested over D-Bus");
                    self.history_clear.store(true, Ordering::Relaxed);
                    (set_value::ACCEPTED, None)
                }
                Ok(false) => (set_value::ACCEPTED, None),
                Err(refused) => (refused.code(), None),
            };
        }
        if path != CUSTOM_NAME {
            return (set_value::NOT_WRITABLE, None);
        }
        let name = match value {
            zvariant::Value::Str(s) => s.as_str().to_owned(),
            _ => return (set_value::NOT_WRITABLE, None),
        };
        if name.chars().count() > MAX_CUSTOM_NAME_CHARS {
            return (set_value::REJECTED, None);
        }
        let mut items = self.lock();
        let Some(item) = items.get_mut(path) else {
            return (set_value::NOT_WRITABLE, None);
        };
        let new = Value::Text(name);
        if item.value == new {
            return (set_value::ACCEPTED, None);
        }
        item.value = new;
        (set_value::ACCEPTED, Some(item.clone()))
    }

    /// A `/Settings/*` write: validated, handed to the poll loop as a command, then shown. A
    /// command that cannot be queued is refused (2) and the path keeps its value.
    fn write_setting(&self, path: &str, value: &zvariant::Value<'_>) -> (i32, Option<Item>) {
        let mut items = self.lock();
        if !items.contains_key(path) {
            return (set_value::NOT_WRITABLE, None);
        }
        let accepted = match writable::check(&items, path, value) {
            Ok(accepted) => accepted,
            Err(refused) => return (refused.code(), None),
        };
        if let Some(command) = accepted.command {
            let sent = self.commands.as_ref().map(|tx| tx.try_send(command));
            if !matches!(sent, Some(Ok(()))) {
                tracing::warn!(path, ?command, "BMS write refused: the port's write queue is full or gone");
                return (set_value::REJECTED, None);
            }
            tracing::info!(path, command = %command, "BMS write requested over D-Bus");
        }
        let Some(new) = accepted.value else {
            return (set_value::ACCEPTED, None);
        };
        match items.get_mut(path) {
            Some(item) if item.value != new => {
                item.value = new;
                (set_value::ACCEPTED, Some(item.clone()))
            }
            _ => (set_value::ACCEPTED, None),
        }
    }

    fn subtree<T>(&self, prefix: &str, each: impl Fn(&Item) -> T) -> HashMap<String, T> {
        let items = self.lock();
        let start = format!("{prefix}/");
        items
            .iter()
            .filter_map(|(path, item)| {
                let relative = path.strip_prefix(&start)?;
                Some((relative.to_owned(), each(item)))
            })
            .collect()
    }
}

/// What the `SetValue` handler of a service holding `items` does with `value` on `path`, run
/// without a bus: the return code, the item as it is afterwards, and the BMS command it queued
/// for the poll loop. The handler (`BusItem::set_value`) calls the same `Shared::write`; only
/// the signal emission is left out. For the `set_value` fuzz target and its regression test.
pub fn set_value_without_bus(
    items: Items,
    path: &str,
    value: &zvariant::Value<'_>,
) -> (i32, Option<Item>, Option<BmsCommand>) {
    let (names, _names_rx) = watch::channel(None);
    let (commands, mut commands_rx) = mpsc::channel(1);
    let shared = Shared::new(items, names).with_commands(Some(commands));
    let (code, _) = shared.write(path, value);
    let after = shared.lock().get(path).cloned();
    (code, after, commands_rx.try_recv().ok())
}

/// Current `/CustomName` text in `items`.
pub(crate) fn custom_name_of(items: &Items) -> String {
    match items.get(CUSTOM_NAME).map(|item| &item.value) {
        Some(Value::Text(name)) => name.clone(),
        _ => String::new(),
    }
}

/// `{"Value": v, "Text": v(s)}` for one item (signals and `GetItems`). The keys are static: two
/// allocations fewer per changed path and cycle.
pub(crate) fn entry(item: &Item) -> HashMap<&'static str, zvariant::Value<'static>> {
    HashMap::from([("Value", item.value.to_variant()), ("Text", zvariant::Value::from(item.text()))])
}

/// Sends one `ItemsChanged` on `/` with `changes`, and per-path `PropertiesChanged` when asked.
/// Emitted on `connection`, which must be the one owning the service name (§1). The bodies are
/// marshalled by hand ([`super::marshal`]).
pub(crate) async fn emit_changes(
    connection: &Connection,
    changes: &[(String, Item)],
    properties_changed: bool,
) -> zbus::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let body = marshal::items_changed(changes.iter().map(|(path, item)| (path.as_str(), item)));
    send_signal(connection, "/", "ItemsChanged", &body, marshal::ITEMS_CHANGED_SIGNATURE).await?;
    if properties_changed {
        for (path, item) in changes {
            let body = marshal::properties_changed(item);
            let signature = marshal::PROPERTIES_CHANGED_SIGNATURE;
            send_signal(connection, path, "PropertiesChanged", &body, signature).await?;
        }
    }
    Ok(())
}

/// A `com.victronenergy.BusItem` signal with a body marshalled by [`super::marshal`].
async fn send_signal(
    connection: &Connection,
    path: &str,
    member: &'static str,
    body: &[u8],
    signature: &'static str,
) -> zbus::Result<()> {
    let mut builder = zbus::Message::signal(path, BUS_ITEM, member)?.endian(zvariant::Endian::Little);
    if let Some(sender) = connection.unique_name() {
        builder = builder.sender(sender)?;
    }
    // SAFETY: `build_raw_body` is unsafe only in that zbus takes the bytes on trust: they must
    // be a valid little-endian body of `signature`. `marshal` writes exactly that (its tests
    // compare every body with zvariant's own bytes over random batches), and the bus daemon
    // checks every message it routes. No memory safety depends on it.
    #[allow(unsafe_code)]
    let message = unsafe { builder.build_raw_body(body, signature, Vec::new()) }?;
    connection.send(&message).await
}

/// One value object, e.g. `/Dc/0/Voltage`.
#[derive(Debug)]
pub(crate) struct BusItem {
    path: String,
    shared: std::sync::Arc<Shared>,
}

impl BusItem {
    pub(crate) fn new(path: String, shared: std::sync::Arc<Shared>) -> Self {
        Self { path, shared }
    }

    fn item(&self) -> Option<Item> {
        self.shared.lock().get(&self.path).cloned()
    }
}

#[interface(name = "com.victronenergy.BusItem")]
impl BusItem {
    /// The value, or an empty `ai` array when invalid.
    fn get_value(&self) -> zvariant::Value<'static> {
        self.item().map_or(Value::Invalid, |item| item.value).to_variant()
    }

    /// The value as text with its unit; three dashes (velib's text for invalid) when invalid.
    fn get_text(&self) -> String {
        self.item().map_or_else(|| Value::Invalid.display(super::value::Unit::Plain), |i| i.text())
    }

    /// 0 accepted, 1 not writable or wrong type, 2 rejected (velib codes).
    async fn set_value(&self, value: OwnedValue, #[zbus(connection)] connection: &Connection) -> i32 {
        let (code, changed) = self.shared.write(&self.path, &value);
        if let Some(item) = changed {
            if self.path == CUSTOM_NAME {
                let name = match &item.value {
                    Value::Text(name) => name.clone(),
                    _ => String::new(),
                };
                let write = CustomNameWrite { name, connection: Some(connection.clone()) };
                self.shared.writes.send_replace(Some(write));
                if self.shared.writes.is_closed() {
                    // The service that would persist it is gone (shutting down); the value still
                    // changed on the bus, so there is nothing else to undo.
                    tracing::warn!("custom name write not persisted: service is shutting down");
                }
            }
            let changes = [(self.path.clone(), item)];
            if let Err(error) = emit_changes(connection, &changes, true).await {
                tracing::warn!(%error, path = %self.path, "cannot signal the written value");
            }
        }
        code
    }

    /// velib compatibility; nobody relies on it (§2.2).
    fn get_description(&self, language: String, length: i32) -> String {
        // velib ignores both arguments too.
        let (_, _) = (language, length);
        "No description given".to_owned()
    }
}

/// An intermediate path such as `/Dc/0`: `GetValue`/`GetText` for its subtree, keys relative.
#[derive(Debug)]
pub(crate) struct TreeNode {
    prefix: String,
    shared: std::sync::Arc<Shared>,
}

impl TreeNode {
    pub(crate) fn new(prefix: String, shared: std::sync::Arc<Shared>) -> Self {
        Self { prefix, shared }
    }
}

#[interface(name = "com.victronenergy.BusItem")]
impl TreeNode {
    /// `v` holding `a{sv}`: relative path → value.
    fn get_value(&self) -> zvariant::Value<'static> {
        zvariant::Value::from(self.shared.subtree(&self.prefix, |i| i.value.to_variant()))
    }

    /// `v` holding `a{ss}`: relative path → text.
    fn get_text(&self) -> zvariant::Value<'static> {
        zvariant::Value::from(self.shared.subtree(&self.prefix, Item::text))
    }
}

/// The root object `/`.
#[derive(Debug)]
pub(crate) struct Root {
    shared: std::sync::Arc<Shared>,
}

impl Root {
    pub(crate) fn new(shared: std::sync::Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[interface(name = "com.victronenergy.BusItem")]
impl Root {
    /// Every path (absolute, with the leading `/`) → `{"Value": v, "Text": v(s)}`.
    fn get_items(&self) -> HashMap<String, HashMap<&'static str, zvariant::Value<'static>>> {
        let items = self.shared.lock();
        items.iter().map(|(path, item)| (path.clone(), entry(item))).collect()
    }

    /// `v` holding `a{sv}`: every path without its leading `/` → value.
    fn get_value(&self) -> zvariant::Value<'static> {
        zvariant::Value::from(self.shared.subtree("", |i| i.value.to_variant()))
    }

    /// `v` holding `a{ss}`: every path without its leading `/` → text.
    fn get_text(&self) -> zvariant::Value<'static> {
        zvariant::Value::from(self.shared.subtree("", Item::text))
    }
}

/// Every intermediate node of `paths` (`/Dc`, `/Dc/0` for `/Dc/0/Voltage`), without `/`.
pub(crate) fn tree_nodes<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut nodes = std::collections::BTreeSet::new();
    for path in paths {
        let mut end = 0;
        while let Some(next) = path[end + 1..].find('/') {
            end += 1 + next;
            nodes.insert(path[..end].to_owned());
        }
    }
    nodes.into_iter().collect()
}

#[cfg(test)]
mod tests;
