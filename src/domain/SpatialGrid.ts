/**
 * A uniform grid over the plane that files integer ids (cluster indices) under the cell their point falls in.
 * Each cell is an intrusive doubly linked list kept in one array (per id: cell key, next id, previous id), so
 * moving an id to another cell is O(1) and costs no allocation; only non-empty cells have an entry in the head map.
 */
export class SpatialGrid {
  /** No id: the end of a cell's list. */
  static readonly NONE = -1

  private readonly inverseCell: number
  private readonly heads = new Map<number, number>()
  /** Per id, three slots: its cell's key, the next id in that cell, the previous one. */
  private readonly links: Array<number> = []

  /**
   * The cell is widened by a relative 1e-9 so that floating-point rounding in `x / cell` can never put two points
   * closer than `cellSize` more than one cell apart: the 3×3 neighbourhood then provably holds every such point.
   */
  constructor(cellSize: number) {
    this.inverseCell = 1 / (cellSize * (1 + 1e-9))
  }

  /** The column (or row) of a coordinate. */
  column(v: number): number {
    return Math.floor(v * this.inverseCell)
  }

  /** The map key of a cell; columns and rows stay far below 2^26 for any radius the config accepts. */
  static key(column: number, row: number): number {
    return column * 67_108_864 + row
  }

  /** The first id filed in a cell, or NONE. */
  first(column: number, row: number): number {
    return this.heads.get(SpatialGrid.key(column, row)) ?? SpatialGrid.NONE
  }

  /** The id after `id` in its cell, or NONE. */
  next(id: number): number {
    return this.links[id * 3 + 1]!
  }

  /** Files a new id (ids are dense: 0, 1, 2, …) at a point. */
  insert(id: number, x: number, y: number): void {
    while (this.links.length < id * 3 + 3) this.links.push(0.5) // a double, so V8 keeps the array unboxed
    this.link(id, SpatialGrid.key(this.column(x), this.column(y)))
  }

  /** Refiles an id whose point moved; a no-op when it stays in its cell. */
  move(id: number, x: number, y: number): void {
    const key = SpatialGrid.key(this.column(x), this.column(y))
    if (key === this.links[id * 3]) return
    this.unlink(id)
    this.link(id, key)
  }

  private link(id: number, key: number): void {
    const links = this.links
    const head = this.heads.get(key) ?? SpatialGrid.NONE
    links[id * 3] = key
    links[id * 3 + 1] = head
    links[id * 3 + 2] = SpatialGrid.NONE
    if (head !== SpatialGrid.NONE) links[head * 3 + 2] = id
    this.heads.set(key, id)
  }

  private unlink(id: number): void {
    const links = this.links
    const key = links[id * 3]!
    const next = links[id * 3 + 1]!
    const prev = links[id * 3 + 2]!
    if (next !== SpatialGrid.NONE) links[next * 3 + 2] = prev
    if (prev !== SpatialGrid.NONE) links[prev * 3 + 1] = next
    else if (next === SpatialGrid.NONE) this.heads.delete(key)
    else this.heads.set(key, next)
  }
}
