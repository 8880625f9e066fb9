// Segment Bridge: a Segment Destination Function that forwards privacy deletes (and, if you like, every
// other event) to your Segment Bridge deployment. Paste this file into Segment: Connections > Catalog >
// Functions > New Function > Destination (segment/README.md has the steps), with two settings:
//   bridgeUrl  the bridge's API URL (the stack's ApiUrl output), e.g. https://abc123.execute-api.us-east-1.amazonaws.com
//   apiKey     the workspace's API key (`segment-bridge workspaces create`), an encrypted setting
//
// Segment's function contract: a handler per event type receives (event, settings); `fetch` is global;
// throwing RetryError makes Segment retry (with backoff, for up to 4 hours), any other error (here
// ValidationError) drops the event. The bridge answers 2xx once the events are durably queued; it follows
// Segment's own retry rules (408, 423, 429 and 5xx but 501 are worth retrying), which this function
// applies too. A delete is also retried on 401/403: a wrong key is a setting to fix, and a deletion
// dropped meanwhile would never reach the bridge.

const BRIDGE_PATH = '/v1/segment'
const ANSWER_DEADLINE_MS = 9000 // the bridge answers in well under a second; Segment allows ~10 s per call

async function onDelete(event, settings) {
  return forwardOne(event, settings, { retryOnAuth: true })
}

async function onIdentify(event, settings) {
  return forwardOne(event, settings, {})
}

async function onTrack(event, settings) {
  return forwardOne(event, settings, {})
}

async function onPage(event, settings) {
  return forwardOne(event, settings, {})
}

async function onScreen(event, settings) {
  return forwardOne(event, settings, {})
}

async function onGroup(event, settings) {
  return forwardOne(event, settings, {})
}

async function onAlias(event, settings) {
  return forwardOne(event, settings, {})
}

// Segment calls onBatch (when batching is on for the function) with an array of events of any types,
// and reads back one status per event: 2xx delivered, 5xx/429 retried, other 4xx discarded.
async function onBatch(events, settings) {
  const hasDelete = events.some((event) => event && event.type === 'delete')
  const answer = await post(events, settings, { retryOnAuth: hasDelete })
  const rejected = new Map()
  for (const rejection of (answer.body && (answer.body.rejected || answer.body.details)) || []) {
    rejected.set(rejection.index, rejection.reason)
  }
  return events.map((_, index) =>
    rejected.has(index) ? { status: 400, errormessage: `Refused by the bridge: ${rejected.get(index)}` } : { status: 200 }
  )
}

async function forwardOne(event, settings, options) {
  const answer = await post(event, settings, options)
  return { accepted: answer.body ? answer.body.accepted : undefined }
}

async function post(body, settings, options) {
  const url = bridgeEndpoint(settings)
  const apiKey = typeof settings.apiKey === 'string' ? settings.apiKey.trim() : ''
  if (!apiKey) {
    throw new ValidationError('The function has no apiKey setting (the workspace API key).')
  }
  let response
  try {
    response = await fetchWithDeadline(url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Bearer ${apiKey}`,
        'User-Agent': 'Segment (Function) segment-bridge'
      },
      body: JSON.stringify(body)
    })
  } catch (error) {
    throw new RetryError(`The bridge could not be reached (${error && error.name ? error.name : 'network error'}).`)
  }
  const answer = { status: response.status, body: await readJson(response) }
  if (answer.status >= 200 && answer.status < 300) {
    return answer
  }
  if (Array.isArray(body) && answer.status === 400 && answer.body && answer.body.code === 'invalid_events') {
    return answer // every event refused, each with its reason: onBatch reports them one by one
  }
  const why = describe(answer)
  if (isRetryable(answer.status) || (options.retryOnAuth && (answer.status === 401 || answer.status === 403))) {
    throw new RetryError(why)
  }
  throw new ValidationError(why)
}

function bridgeEndpoint(settings) {
  const base = typeof settings.bridgeUrl === 'string' ? settings.bridgeUrl.trim().replace(/\/+$/, '') : ''
  if (!/^https?:\/\/[^\s/]+/i.test(base)) {
    throw new ValidationError('The function has no valid bridgeUrl setting (https://... the stack\'s ApiUrl).')
  }
  return base.endsWith(BRIDGE_PATH) ? base : base + BRIDGE_PATH
}

// Segment's rules, which the bridge's statuses follow: 408, 423, 429 and 5xx except 501 are worth retrying.
function isRetryable(status) {
  return status === 408 || status === 423 || status === 429 || (status >= 500 && status !== 501)
}

function describe(answer) {
  const code = answer.body && typeof answer.body.code === 'string' ? answer.body.code : 'no code'
  const message = answer.body && typeof answer.body.message === 'string' ? answer.body.message : ''
  return `The bridge answered ${answer.status} (${code})${message ? ': ' + message : ''}`
}

async function readJson(response) {
  try {
    return JSON.parse(await response.text())
  } catch (error) {
    return null
  }
}

async function fetchWithDeadline(url, init) {
  if (typeof AbortController === 'undefined') {
    return fetch(url, Object.assign({ timeout: ANSWER_DEADLINE_MS }, init)) // node-fetch v2's own option
  }
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), ANSWER_DEADLINE_MS)
  try {
    return await fetch(url, Object.assign({ signal: controller.signal }, init))
  } finally {
    clearTimeout(timer)
  }
}
