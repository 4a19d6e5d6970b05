import { randomBytes } from "node:crypto"
import { Webhook } from "standardwebhooks"

/** A new signing secret in the Standard Webhooks format: `whsec_` and 32 random bytes in base64. */
export const newSecret = () => `whsec_${randomBytes(32).toString("base64")}`

/**
 * The Standard Webhooks headers of a delivery (webhook-id, webhook-timestamp in seconds, webhook-signature:
 * `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`), made by the maintained `standardwebhooks` package,
 * which receivers verify with the same package (README).
 */
export const signatureHeaders = (secret: string, eventId: string, at: Date, body: string) => ({
  "webhook-id": eventId,
  "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
  "webhook-signature": new Webhook(secret).sign(eventId, at, body),
})
