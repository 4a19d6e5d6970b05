/**
 * A uniform grid over the plane that files integer ids (cluster indices) under the cell their point falls in.
 * Each cell is an intrusive doubly linked list kept in typed arrays, so moving an id to another cell is O(1)
 * and costs no allocation; only non-empty cells have an entry in the head map.
 */
export class SpatialGrid {
  /** No id: the end of a cell's list. */
  static readonly NONE = -1

  private readonly inverseCell: number
  private readonly heads = new Map<number, number>()
  private cellOf: Float64Array
  private nextOf: Int32Array
  private prevOf: Int32Array

  /**
   * The cell is widened by a relative 1e-9 so that floating-point rounding in `x / cell` can never put two points
   * closer than `cellSize` more than one cell apart: the 3×3 neighbourhood then provably holds every such point.
   */
  constructor(cellSize: number, capacity = 4) {
    this.inverseCell = 1 / (cellSize * (1 + 1e-9))
    this.cellOf = new Float64Array(capacity)
    this.nextOf = new Int32Array(capacity)
    this.prevOf = new Int32Array(capacity)
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
    return this.nextOf[id]!
  }

  /** Files a new id (ids are dense: 0, 1, 2, …) at a point. */
  insert(id: number, x: number, y: number): void {
    if (id >= this.nextOf.length) this.grow(Math.max(id + 1, this.nextOf.length * 2))
    this.link(id, SpatialGrid.key(this.column(x), this.column(y)))
  }

  /** Refiles an id whose point moved; a no-op when it stays in its cell. */
  move(id: number, x: number, y: number): void {
    const key = SpatialGrid.key(this.column(x), this.column(y))
    if (key === this.cellOf[id]) return
    this.unlink(id)
    this.link(id, key)
  }

  private link(id: number, key: number): void {
    const head = this.heads.get(key) ?? SpatialGrid.NONE
    this.cellOf[id] = key
    this.prevOf[id] = SpatialGrid.NONE
    this.nextOf[id] = head
    if (head !== SpatialGrid.NONE) this.prevOf[head] = id
    this.heads.set(key, id)
  }

  private unlink(id: number): void {
    const prev = this.prevOf[id]!
    const next = this.nextOf[id]!
    if (next !== SpatialGrid.NONE) this.prevOf[next] = prev
    if (prev !== SpatialGrid.NONE) this.nextOf[prev] = next
    else if (next === SpatialGrid.NONE) this.heads.delete(this.cellOf[id]!)
    else this.heads.set(this.cellOf[id]!, next)
  }

  private grow(capacity: number): void {
    const cellOf = new Float64Array(capacity)
    const nextOf = new Int32Array(capacity)
    const prevOf = new Int32Array(capacity)
    cellOf.set(this.cellOf)
    nextOf.set(this.nextOf)
    prevOf.set(this.prevOf)
    this.cellOf = cellOf
    this.nextOf = nextOf
    this.prevOf = prevOf
  }
}
