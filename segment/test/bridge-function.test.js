// The Destination Function under Node (node --test segment/test): its answers to each status the bridge
// can give, against a stand-in on 127.0.0.1, and, when BRIDGE_URL is set (tests/e2e/test_privacy_requests.py
// sets it to a local stack it started), end to end against the bridge itself.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { load, deliver, deliverBatch } = require('./harness')

const KEY = 'sbk_test_function_key_0123456789abcdef'

// A stand-in bridge that answers every request with `status` and `body`, and records what it was sent.
async function standIn(status, body) {
  const seen = []
  const server = http.createServer((request, response) => {
    let data = ''
    request.on('data', (chunk) => (data += chunk))
    request.on('end', () => {
      seen.push({ method: request.method, url: request.url, headers: request.headers, body: JSON.parse(data) })
      response.writeHead(status, { 'Content-Type': 'application/json' })
      response.end(JSON.stringify(body))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${server.address().port}`
  return { url, seen, close: () => new Promise((resolve) => server.close(resolve)) }
}

const DELETE = { type: 'delete', userId: 'user-1', timestamp: '2026-01-01T00:00:00.000Z' }
const TRACK = { type: 'track', userId: 'user-1', event: 'Clicked', messageId: 'm-1' }
const OK = { success: true, accepted: 1, rejected: [], echoes: 0 }

test('a delete is posted as sent to /v1/segment with the workspace key and delivered on 200', async () => {
  const bridge = await standIn(200, OK)
  try {
    const result = await deliver(load(), DELETE, { bridgeUrl: bridge.url + '/', apiKey: KEY })
    assert.equal(result.outcome, 'delivered')
    const [sent] = bridge.seen
    assert.equal(sent.method, 'POST')
    assert.equal(sent.url, '/v1/segment')
    assert.equal(sent.headers.authorization, `Bearer ${KEY}`)
    assert.equal(sent.headers['content-type'], 'application/json')
    assert.deepEqual(sent.body, DELETE)
  } finally {
    await bridge.close()
  }
})

const STATUSES = [
  // [status, code, outcome for a track, outcome for a delete]
  [503, 'service_unavailable', 'retry', 'retry'],
  [500, 'internal_error', 'retry', 'retry'],
  [429, 'too_many_requests', 'retry', 'retry'],
  [408, 'timeout', 'retry', 'retry'],
  [501, 'not_implemented', 'discard', 'discard'],
  [400, 'invalid_body', 'discard', 'discard'],
  [413, 'payload_too_large', 'discard', 'discard'],
  [415, 'unsupported_encoding', 'discard', 'discard'],
  [401, 'unauthorized', 'discard', 'retry'], // a wrong key is a setting to fix: a delete waits for it
  [403, 'forbidden', 'discard', 'retry']
]

for (const [status, code, forTrack, forDelete] of STATUSES) {
  test(`a ${status} from the bridge: a track is ${forTrack === 'retry' ? 'retried' : 'dropped'}, a delete ${forDelete === 'retry' ? 'retried' : 'dropped'}`, async () => {
    const bridge = await standIn(status, { code, message: 'as the bridge says' })
    try {
      const fn = load()
      const settings = { bridgeUrl: bridge.url, apiKey: KEY }
      const track = await deliver(fn, TRACK, settings)
      const del = await deliver(fn, DELETE, settings)
      assert.equal(track.outcome, forTrack)
      assert.equal(del.outcome, forDelete)
      assert.match(track.error.message, new RegExp(`${status} \\(${code}\\)`))
    } finally {
      await bridge.close()
    }
  })
}

test('a bridge that cannot be reached is retried', async () => {
  const bridge = await standIn(200, OK)
  await bridge.close() // nothing listens there any more
  const result = await deliver(load(), DELETE, { bridgeUrl: bridge.url, apiKey: KEY })
  assert.equal(result.outcome, 'retry')
})

test('missing or unusable settings drop the event with a reason, and nothing is sent', async () => {
  const fn = load(() => assert.fail('nothing should be fetched'))
  for (const settings of [{ bridgeUrl: 'https://bridge.example' }, { apiKey: KEY }, { bridgeUrl: 'bridge', apiKey: KEY }]) {
    const result = await deliver(fn, DELETE, settings)
    assert.equal(result.outcome, 'discard')
    assert.match(result.error.message, /setting/)
  }
})

test('a batch reports each event the bridge refused as 400 and the rest as 200', async () => {
  const bridge = await standIn(200, { success: true, accepted: 2, rejected: [{ index: 1, messageId: null, reason: 'event: Field required' }], echoes: 0 })
  try {
    const result = await deliverBatch(load(), [TRACK, { type: 'track', userId: 'u' }, DELETE], { bridgeUrl: bridge.url, apiKey: KEY })
    assert.equal(result.outcome, 'delivered')
    assert.deepEqual(result.statuses.map((s) => s.status), [200, 400, 200])
    assert.equal(bridge.seen[0].body.length, 3) // one request for the batch
  } finally {
    await bridge.close()
  }
})

// --- against the bridge itself (a local stack) ---------------------------------------------------------

const STACK = process.env.BRIDGE_URL
const STACK_KEY = process.env.BRIDGE_API_KEY
const USER = process.env.BRIDGE_TEST_USER || 'function-user'
const skip = STACK ? false : 'BRIDGE_URL is not set (tests/e2e/test_privacy_requests.py runs these)'

test('against the bridge: events and then a delete of their user are delivered', { skip }, async () => {
  const fn = load()
  const settings = { bridgeUrl: STACK, apiKey: STACK_KEY }
  const identify = await deliver(fn, { type: 'identify', userId: USER, traits: { plan: 'pro' }, timestamp: '2025-12-01T00:00:00.000Z', messageId: `fn-identify-${USER}` }, settings)
  const track = await deliver(fn, { type: 'track', userId: USER, event: 'Signed Up', timestamp: '2025-12-01T00:00:01.000Z', messageId: `fn-track-${USER}` }, settings)
  assert.equal(identify.outcome, 'delivered', identify.error && identify.error.message)
  assert.equal(track.outcome, 'delivered', track.error && track.error.message)
  const del = await deliver(fn, { type: 'delete', userId: USER, timestamp: '2025-12-02T00:00:00.000Z', context: null, integrations: null }, settings)
  assert.equal(del.outcome, 'delivered', del.error && del.error.message)
  assert.equal(del.value.accepted, 1)
})

test('against the bridge: a batch with one invalid event delivers the rest', { skip }, async () => {
  const result = await deliverBatch(load(), [
    { type: 'track', userId: `${USER}-batch`, event: 'Batched', messageId: `fn-batch-${USER}` },
    { type: 'track', userId: `${USER}-batch` }
  ], { bridgeUrl: STACK, apiKey: STACK_KEY })
  assert.equal(result.outcome, 'delivered', result.error && result.error.message)
  assert.deepEqual(result.statuses.map((s) => s.status), [200, 400])
})

test('against the bridge: a wrong key drops a track and retries a delete', { skip }, async () => {
  const fn = load()
  const settings = { bridgeUrl: STACK, apiKey: 'sbk_wrong_key_000000000000000000000000' }
  assert.equal((await deliver(fn, TRACK, settings)).outcome, 'discard')
  assert.equal((await deliver(fn, DELETE, settings)).outcome, 'retry')
})
