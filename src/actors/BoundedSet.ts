/** A set that forgets its oldest member once it holds `capacity` (insertion order: a Set iterates oldest first). */
export class BoundedSet<A> {
  private readonly members = new Set<A>()

  constructor(private readonly capacity: number) {}

  has(value: A): boolean {
    return this.members.has(value)
  }

  add(value: A): void {
    this.members.delete(value)
    if (this.members.size >= this.capacity) {
      const oldest = this.members.values().next()
      if (oldest.done !== true) this.members.delete(oldest.value)
    }
    this.members.add(value)
  }

  /** Removes a member; whether it was there. */
  delete(value: A): boolean {
    return this.members.delete(value)
  }
}
