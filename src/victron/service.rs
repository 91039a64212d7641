//! [`BatteryService`]: one `com.victronenergy.battery.<suffix>` service on its own connection.
//!
//! Start-up follows `victron-dbus.md` §4: connect without a name, get the device instance from the
//! settings service, register every object with its initial value, and only then claim the name
//! with `DO_NOT_QUEUE`, so a client that sees the name finds a valid `/DeviceInstance`.
//!
//! The caller calls [`BatteryService::publish`] every cycle. If the bus went away (D-Bus restart),
//! `publish` returns an error for that cycle and the next call reconnects and re-registers
//! everything with the latest values; the device instance of the first start is kept (Venus applies
//! instance changes only at restart, §5).

use super::bus_item::{
    custom_name_of, emit_changes, tree_nodes, BusItem, CustomNameWrite, Root, Shared, TreeNode,
};
use super::paths::{collect, update, Context, Identity, Shadow, Snapshot};
use super::settings::{self, error_chain};
use super::writable::{self, BmsWrites};
use super::{is_safe_suffix, BusAddress, DbusError, SERVICE_PREFIX};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::Connection;

/// Longest wait for connecting to the bus.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A published battery.
#[derive(Debug)]
pub struct BatteryService {
    bus: BusAddress,
    identity: Identity,
    name: String,
    uid: String,
    device_instance: i32,
    shared: Arc<Shared>,
    connection: Option<Connection>,
    custom_name: watch::Receiver<String>,
    persister: JoinHandle<()>,
    properties_changed: bool,
    warned_extra_cells: bool,
    /// The last published values in table order, with the count of client writes they saw.
    shadow: (Shadow, u64),
}

impl BatteryService {
    /// Connects, allocates the device instance, registers every path with `first`'s values and
    /// claims `com.victronenergy.battery.<identity.service_suffix>`. `identity.max_cells == 0`
    /// takes the cell count of `first` (0 cells if it has none).
    pub async fn start(
        bus: &BusAddress,
        identity: Identity,
        first: &Snapshot<'_>,
    ) -> Result<Self, DbusError> {
        Self::start_with_writes(bus, identity, first, None).await
    }

    /// [`Self::start`], plus the writable `/Settings/*` paths of `writes` (none when `None`):
    /// accepted writes go to `writes.commands`. The paths are fixed for the service's lifetime.
    pub async fn start_with_writes(
        bus: &BusAddress,
        mut identity: Identity,
        first: &Snapshot<'_>,
        writes: Option<BmsWrites>,
    ) -> Result<Self, DbusError> {
        if !is_safe_suffix(&identity.service_suffix) {
            return Err(DbusError::BadSuffix(identity.service_suffix));
        }
        if identity.max_cells == 0 {
            identity.max_cells = first.battery.cells_in_series().map_or(0, usize::from);
        }
        let name = format!("{SERVICE_PREFIX}{}", identity.service_suffix);
        let uid = settings::settings_uid(&identity.unique_id);
        let connection = connect(bus).await?;
        let loaded = settings::load(&connection, &uid, identity.fallback_device_instance).await;
        let custom_name = loaded.custom_name.unwrap_or_else(|| identity.custom_name.clone());
        let ctx = Context {
            identity: &identity,
            device_instance: loaded.device_instance,
            custom_name: &custom_name,
            snapshot: first,
        };
        let (writes_tx, writes_rx) = watch::channel(None);
        let mut items = collect(&ctx);
        if let Some(w) = &writes {
            items.extend(writable::initial_items(w.support));
        }
        let commands = writes.map(|w| w.commands);
        let shared = Arc::new(Shared::new(items, writes_tx).with_commands(commands));
        let (name_tx, name_rx) = watch::channel(custom_name);
        let persister = tokio::spawn(persist_custom_names(writes_rx, uid.clone(), name_tx));
        let mut service = Self {
            bus: bus.clone(),
            identity,
            name,
            uid,
            device_instance: loaded.device_instance,
            shared,
            connection: None,
            custom_name: name_rx,
            persister,
            properties_changed: true,
            warned_extra_cells: false,
            shadow: (Shadow::default(), 0),
        };
        service.warn_extra_cells(first);
        service.register(&connection).await?;
        service.connection = Some(connection);
        tracing::info!(service = %service.name, instance = service.device_instance, "published");
        Ok(service)
    }

    /// Publishes `snapshot`: updates every object and sends one `ItemsChanged` with the changed
    /// paths (plus one `PropertiesChanged` per changed path, see
    /// [`Self::set_properties_changed`]). Reconnects first when the connection is gone.
    pub async fn publish(&mut self, snapshot: &Snapshot<'_>) -> Result<(), DbusError> {
        self.warn_extra_cells(snapshot);
        let changes = {
            let mut items = self.shared.lock();
            // A client's write changed the table behind the shadow's back: look every path up.
            let writes = self.shared.writes_taken();
            if writes != self.shadow.1 {
                self.shadow = (Shadow::default(), writes);
            }
            let custom_name = custom_name_of(&items);
            let ctx = Context {
                identity: &self.identity,
                device_instance: self.device_instance,
                custom_name: &custom_name,
                snapshot,
            };
            update(&ctx, &mut items, &mut self.shadow.0)
        };
        let connection = match &self.connection {
            Some(connection) if !connection.is_closed() => connection.clone(),
            _ => return self.reconnect().await,
        };
        if let Err(source) = emit_changes(&connection, &changes, self.properties_changed).await {
            self.connection = None;
            return Err(DbusError::Signal { name: self.name.clone(), source });
        }
        Ok(())
    }

    /// Drops the current connection (if any), connects again, re-registers every object with the
    /// latest values and claims the name again. [`Self::publish`] calls it when needed.
    pub async fn reconnect(&mut self) -> Result<(), DbusError> {
        self.connection = None;
        let connection = connect(&self.bus).await?;
        self.register(&connection).await?;
        self.connection = Some(connection);
        tracing::info!(service = %self.name, "re-published after reconnecting to the bus");
        Ok(())
    }

    /// Whether a client wrote 1 to `/History/Clear` since the last call (the owner of the
    /// counters then clears them).
    pub fn take_history_clear(&self) -> bool {
        self.shared.history_clear.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// `/DeviceInstance`.
    pub fn device_instance(&self) -> i32 {
        self.device_instance
    }

    /// The bus name, `com.victronenergy.battery.<suffix>`.
    pub fn service_name(&self) -> &str {
        &self.name
    }

    /// Key of this battery under `/Settings/Devices/` in the settings service.
    pub fn settings_uid(&self) -> &str {
        &self.uid
    }

    /// Current `/CustomName`.
    pub fn custom_name(&self) -> String {
        self.custom_name.borrow().clone()
    }

    /// Receives every accepted `/CustomName` write (after it was handed to the settings service).
    pub fn custom_name_changes(&self) -> watch::Receiver<String> {
        self.custom_name.clone()
    }

    /// Whether the service currently holds a live connection.
    pub fn is_connected(&self) -> bool {
        self.connection.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Also send per-path `PropertiesChanged` (default on; needed by Venus before 2021, §2.4).
    pub fn set_properties_changed(&mut self, on: bool) {
        self.properties_changed = on;
    }

    /// The number of cell paths published.
    pub fn max_cells(&self) -> usize {
        self.identity.max_cells
    }

    fn warn_extra_cells(&mut self, snapshot: &Snapshot<'_>) {
        let cells = snapshot.battery.cell_voltages_v.as_ref().map_or(0, Vec::len);
        if cells > self.identity.max_cells && !self.warned_extra_cells {
            self.warned_extra_cells = true;
            tracing::warn!(
                service = %self.name,
                cells,
                published = self.identity.max_cells,
                "battery reports more cells than the service has paths for; extra cells are \
                 not published until bms-bridge restarts"
            );
        }
    }

    /// Registers root, tree nodes and items, then claims the name (§4 steps 3–4).
    async fn register(&self, connection: &Connection) -> Result<(), DbusError> {
        let server = connection.object_server();
        let paths: Vec<String> = self.shared.lock().keys().cloned().collect();
        let register_error = |path: &str| {
            let path = path.to_owned();
            move |source| DbusError::Register { path, source }
        };
        server.at("/", Root::new(self.shared.clone())).await.map_err(register_error("/"))?;
        for node in tree_nodes(paths.iter()) {
            let object = TreeNode::new(node.clone(), self.shared.clone());
            server.at(node.as_str(), object).await.map_err(register_error(&node))?;
        }
        for path in paths {
            let object = BusItem::new(path.clone(), self.shared.clone());
            server.at(path.as_str(), object).await.map_err(register_error(&path))?;
        }
        let reply =
            connection.request_name_with_flags(self.name.as_str(), RequestNameFlags::DoNotQueue.into()).await;
        match reply {
            Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => Ok(()),
            Ok(RequestNameReply::Exists | RequestNameReply::InQueue) | Err(zbus::Error::NameTaken) => {
                Err(DbusError::NameTaken(self.name.clone()))
            }
            Err(source) => Err(DbusError::RequestName { name: self.name.clone(), source }),
        }
    }
}

impl Drop for BatteryService {
    fn drop(&mut self) {
        self.persister.abort();
    }
}

async fn connect(bus: &BusAddress) -> Result<Connection, DbusError> {
    let error = |source| DbusError::Connect { bus: bus.clone(), source };
    let builder = bus.builder().map_err(error)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(result) => result.map_err(error),
        Err(_) => Err(error(zbus::Error::Failure(format!("no connection within {CONNECT_TIMEOUT:?}")))),
    }
}

/// Hands accepted `/CustomName` writes to the caller and to the settings service.
async fn persist_custom_names(
    mut writes: watch::Receiver<Option<CustomNameWrite>>,
    uid: String,
    names: watch::Sender<String>,
) {
    while writes.changed().await.is_ok() {
        let Some(write) = writes.borrow_and_update().clone() else {
            continue;
        };
        names.send_replace(write.name.clone());
        let Some(connection) = write.connection else {
            continue;
        };
        if let Err(error) = settings::save_custom_name(&connection, &uid, &write.name).await {
            tracing::warn!(
                error = %error_chain(&error),
                "custom name not stored in the settings service; it lasts until bms-bridge exits"
            );
        }
    }
}
