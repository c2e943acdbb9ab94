/** Rows returned by a multi-row INSERT, put back in the order of the ids the caller generated. */
export function inOrder<R extends { id: string }>(ids: readonly string[], rows: readonly R[]): R[] {
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.map((id) => {
    const row = byId.get(id);
    if (!row) throw new Error(`the insert returned no row for ${id}`);
    return row;
  });
}
