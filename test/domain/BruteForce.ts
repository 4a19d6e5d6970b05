/** The contract's rule written the obvious way (scan every cluster), to check the grid search against. */
export class BruteForcePage {
  readonly sums: Array<[number, number, number]> = []

  constructor(readonly radius: number) {}

  predict(x: number, y: number): number {
    let best = -1
    let bestDistance = Number.POSITIVE_INFINITY
    this.sums.forEach(([sx, sy, n], i) => {
      const dx = sx / n - x
      const dy = sy / n - y
      const d = dx * dx + dy * dy
      if (d < bestDistance) {
        best = i
        bestDistance = d
      }
    })
    return best !== -1 && bestDistance < this.radius * this.radius ? best : -1
  }

  assign(x: number, y: number): number {
    const i = this.predict(x, y)
    if (i === -1) {
      this.sums.push([x, y, 1])
      return this.sums.length - 1
    }
    const s = this.sums[i]!
    s[0] += x
    s[1] += y
    s[2] += 1
    return i
  }
}
