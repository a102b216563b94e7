"""The Nacos 1.x config domain on the replicated store: keys, records, commands, the
deterministic `ConfigState` (apply and reads over the shared `DatumTable`), validation,
the `ConfigService` (validate → stamp → propose) and the long-poll `ListenerHub`."""
