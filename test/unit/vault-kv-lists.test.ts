// The Vault folder listing's answer to a 403: Vault answers 403 to an expired
// token as to a missing grant, so a denied listing turns the folder off only
// when a metadata GET then succeeds with the same token. The provider's own
// integration tests (test/integration/vault.test.ts) run this on OpenBao;
// here the order of events is set by hand: a check that comes while the new
// login is still under way must not turn the folder off, nor a GET sent
// before the 403 came; one check's abort must not fail the others that share
// its listing.
import t from 'tap'
import { pino } from 'pino'
import { KvVersionLists, FRESH_MS, type KvKey } from '../../agent/providers/vault-kv-lists.js'
import type { VaultCall } from '../../agent/providers/vault-http.js'

function setup (): { lists: KvVersionLists, calls: VaultCall[], setToken: (s: string) => void, setAnswer: (status: number) => void, tick: () => void } {
  let token = 'token-1'
  let status = 403
  let now = 0
  const calls: VaultCall[] = []
  const lists = new KvVersionLists({
    storeName: 'vault',
    logger: pino({ level: 'silent' }),
    now: () => now,
    currentToken: () => token,
    call: async (c) => {
      calls.push(c)
      const body = status === 200 ? { data: { keys: ['a', 'b'], key_info: { a: { current_version: 3 }, b: { current_version: 5 } } } } : { errors: ['permission denied'] }
      return { answer: { status, body }, sentWith: token }
    },
  })
  return { lists, calls, setToken: (s) => { token = s }, setAnswer: (s) => { status = s }, tick: () => { now += FRESH_MS + 1 } }
}

const a: KvKey = { mount: 'secret', dir: 'app/', name: 'a' }
const b: KvKey = { mount: 'secret', dir: 'app/', name: 'b' }

t.test('a check that comes before the new login ends does not turn the folder off', async (t) => {
  const { lists, calls, setToken, setAnswer, tick } = setup()
  lists.note(a)
  lists.note(b)
  t.equal(await lists.version(a, undefined), undefined, 'the listing is denied: check the metadata')
  t.equal(calls.length, 1)
  tick()
  // The token has expired; its metadata GETs are denied too and a login is under way: same token still.
  t.equal(await lists.version(b, undefined), undefined, 'still the denied token: check the metadata')
  t.equal(calls.length, 1, 'no listing with the token it was denied to')
  setToken('token-2')
  setAnswer(200)
  tick()
  t.equal(await lists.version(a, undefined), 3, 'the new login\'s token lists the folder')
  t.equal(await lists.version(b, undefined), 5, 'and the listing answers the other check')
  t.equal(calls.length, 2)
})

t.test('a listing denied to a token that then reads the metadata is the policy: the folder is not listed again', async (t) => {
  const { lists, calls, setToken, tick } = setup()
  lists.note(a)
  lists.note(b)
  t.equal(await lists.version(a, undefined), undefined)
  lists.confirmDenied(a, 'token-0', lists.ticket())
  tick()
  t.equal(await lists.version(a, undefined), undefined)
  t.equal(calls.length, 1, 'a GET by another token confirms nothing (and the denied token lists nothing)')
  lists.confirmDenied(a, 'token-1', lists.ticket())
  setToken('token-2')
  tick()
  t.equal(await lists.version(a, undefined), undefined, 'off for good, whatever the token')
  t.equal(await lists.version(b, undefined), undefined)
  t.equal(calls.length, 1)
})

t.test('a 404 or 405 turns the folder off at once; a 429 or 503 fails the checks it answers', async (t) => {
  for (const status of [404, 405]) {
    const { lists, calls, setAnswer, tick } = setup()
    setAnswer(status)
    lists.note(a)
    lists.note(b)
    t.equal(await lists.version(a, undefined), undefined)
    tick()
    t.equal(await lists.version(b, undefined), undefined)
    t.equal(calls.length, 1, `${status}: listed once`)
  }
  for (const status of [429, 503]) {
    const { lists, calls, setAnswer, tick } = setup()
    setAnswer(status)
    lists.note(a)
    lists.note(b)
    t.same(await Promise.all([lists.version(a, undefined), lists.version(b, undefined)]), [{ unavailable: status }, { unavailable: status }], `${status}: both checks fail`)
    t.equal(calls.length, 1, 'with one request')
    setAnswer(200)
    tick()
    t.equal(await lists.version(a, undefined), 3, 'and the next listing answers')
  }
})

t.test('a metadata GET sent before the listing\'s 403 came confirms nothing (it may have been served before the token expired)', async (t) => {
  const { lists, calls, setToken, setAnswer, tick } = setup()
  lists.note(a)
  lists.note(b)
  const early = lists.ticket() // a GET of b's metadata, sent while the listing is in flight
  t.equal(await lists.version(a, undefined), undefined, 'the listing is denied')
  lists.confirmDenied(a, 'token-1', early)
  setToken('token-2')
  setAnswer(200)
  tick()
  t.equal(await lists.version(a, undefined), 3, 'not off: the new token lists the folder')
  t.equal(calls.length, 2)
})

/** A listing whose answer the test releases, and the signal each call was sent with. */
function pending (): { lists: KvVersionLists, signals: Array<AbortSignal | undefined>, answer: () => void } {
  const signals: Array<AbortSignal | undefined> = []
  let release: () => void = () => {}
  const lists = new KvVersionLists({
    storeName: 'vault',
    logger: pino({ level: 'silent' }),
    currentToken: () => 'token-1',
    call: async (_c, signal) => {
      signals.push(signal)
      await new Promise<void>((resolve, reject) => {
        release = resolve
        signal?.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })
      return { answer: { status: 200, body: { data: { keys: ['a', 'b'], key_info: { a: { current_version: 3 }, b: { current_version: 5 } } } } }, sentWith: 'token-1' }
    },
  })
  lists.note(a)
  lists.note(b)
  return { lists, signals, answer: () => { release() } }
}

t.test('one check\'s abort gives up that check only; the listing answers the others', async (t) => {
  const { lists, signals, answer } = pending()
  const first = new AbortController()
  const pa = lists.version(a, first.signal)
  const pb = lists.version(b, undefined)
  first.abort(new Error('first check\'s deadline'))
  await t.rejects(pa, { message: 'first check\'s deadline' }, 'the aborted check fails')
  t.equal(signals.length, 1)
  t.equal(signals[0]?.aborted, false, 'the shared listing is not cut')
  answer()
  t.equal(await pb, 5, 'the other check gets its version')
})

t.test('the listing is cut once every check waiting on it gave up, and the next check lists again', async (t) => {
  const { lists, signals, answer } = pending()
  const one = new AbortController()
  const two = new AbortController()
  const pa = lists.version(a, one.signal)
  const pb = lists.version(b, two.signal)
  one.abort(new Error('one'))
  await t.rejects(pa)
  t.equal(signals[0]?.aborted, false, 'one check still waits')
  two.abort(new Error('two'))
  await t.rejects(pb)
  t.equal(signals[0]?.aborted, true, 'nobody waits: the request is cut')
  const pc = lists.version(a, undefined)
  t.equal(signals.length, 2, 'a later check sends a listing of its own')
  answer()
  t.equal(await pc, 3)
})
