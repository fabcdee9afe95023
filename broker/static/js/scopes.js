// Consent scopes (protocol/scopes.py) and the 別紙5 inventory items in their order; the list is
// generated from protocol/scopes.py (tests/protocol/test_scopes.py checks it is current).

export const SCOPE_VIEW = "screen:view";
export const SCOPE_CONTROL = "input:control";

// generated:begin (python -m protocol.scopes)
export const SCOPE_RESTART = "system:restart";
export const INVENTORY_ITEMS = [
  "os",
  "cert_id",
  "machine_name",
  "mac_addresses",
  "volume_serial",
  "volume_free",
  "default_browser",
  "default_mail",
  "cpu",
  "memory",
  "router",
];
/** The scope statuses of protocol/scopes.py, plus "none" for a scope never asked. */
export const STATUSES = ["none", "requested", "granted", "denied", "timeout", "withdrawn"];
// generated:end

export function inventoryScope(item) {
  return `inventory:${item}`;
}

/** Every scope the console shows a row for, in display order. */
export const ALL_SCOPES = [SCOPE_VIEW, SCOPE_CONTROL, SCOPE_RESTART, ...INVENTORY_ITEMS.map(inventoryScope)];

/** A scope as an id/test-id fragment: "input:control" → "input-control". */
export function scopeSlug(scope) {
  return scope.replace(/[^a-z0-9_]/g, "-");
}

export function scopeStatus(sessionState, scope) {
  const status = sessionState && sessionState.scopes ? sessionState.scopes[scope] : undefined;
  return STATUSES.includes(status) ? status : "none";
}
