// Calls the function's handlers the way Segment's Functions runtime does (its documented contract):
// the source is evaluated as a plain script (no modules) with `fetch`, `RetryError`, `ValidationError`,
// `EventNotSupported` and `InvalidEventPayload` as globals; Segment picks the handler by the event's type
// (`onTrack` for "track", ..., `onDelete` for "delete"), or `onBatch` for a batch, and calls it with
// (event, settings). A handler that returns delivers the event; RetryError (and a timeout) retries it;
// any other error discards it; no handler for the type is EventNotSupported (discarded).
'use strict'

const fs = require('node:fs')
const path = require('node:path')
const vm = require('node:vm')

class RetryError extends Error {}
class ValidationError extends Error {}
class EventNotSupported extends Error {}
class InvalidEventPayload extends Error {}
for (const type of [RetryError, ValidationError, EventNotSupported, InvalidEventPayload]) {
  Object.defineProperty(type.prototype, 'name', { value: type.name })
}

const SOURCE = path.join(__dirname, '..', 'bridge-function.js')

function load(fetchImpl = globalThis.fetch) {
  const sandbox = {
    fetch: fetchImpl,
    RetryError,
    ValidationError,
    EventNotSupported,
    InvalidEventPayload,
    console,
    AbortController,
    setTimeout,
    clearTimeout,
    URL,
    Buffer
  }
  vm.createContext(sandbox)
  vm.runInContext(fs.readFileSync(SOURCE, 'utf8'), sandbox, { filename: 'bridge-function.js' })
  return sandbox
}

const HANDLERS = {
  identify: 'onIdentify',
  track: 'onTrack',
  page: 'onPage',
  screen: 'onScreen',
  group: 'onGroup',
  alias: 'onAlias',
  delete: 'onDelete'
}

function outcomeOf(error) {
  if (error instanceof RetryError) return 'retry'
  return 'discard'
}

// One event, as Segment delivers it: { outcome: 'delivered' | 'retry' | 'discard', error?, value? }
async function deliver(fn, event, settings) {
  const handler = fn[HANDLERS[event.type]]
  if (typeof handler !== 'function') {
    return { outcome: 'discard', error: new EventNotSupported(`${event.type} is not supported`) }
  }
  try {
    const value = await handler(JSON.parse(JSON.stringify(event)), Object.freeze({ ...settings }))
    return { outcome: 'delivered', value }
  } catch (error) {
    return { outcome: outcomeOf(error), error }
  }
}

// A batch, as Segment delivers one to onBatch: the per-event statuses, or the whole batch's outcome.
async function deliverBatch(fn, events, settings) {
  try {
    const statuses = await fn.onBatch(JSON.parse(JSON.stringify(events)), Object.freeze({ ...settings }))
    return { outcome: 'delivered', statuses }
  } catch (error) {
    return { outcome: outcomeOf(error), error }
  }
}

module.exports = { load, deliver, deliverBatch, RetryError, ValidationError }
