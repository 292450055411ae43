// Stand-in fidelity: every request of every recording of the real Key Vault
// service (../shared/azure-recordings) is replayed, in order, against the Key
// Vault stand-in, and each answer is compared with the service's:
//   - status code;
//   - on 401, WWW-Authenticate: a Bearer challenge with the same parameters, an
//     `authorization` URL whose path is one tenant id, the same `resource`;
//   - Content-Type (or its absence, for 204);
//   - JSON shape: key sets and value types, recursively (never values: ids,
//     timestamps, version ids differ by nature);
//   - error.code / error.innererror.code.
// Entries recorded as the 401 challenge are sent without Authorization (as the
// SDK sends the first request of a client); every other entry carries an
// access token from the fake Entra endpoint. Recorded version ids are mapped to
// the ids the stand-in returned for the same PUT; a recorded `$skiptoken` URL
// is replaced by the stand-in's own nextLink. A request repeated with a
// different recorded status is a poll (an SDK poller waiting for a soft delete
// to finish): it is re-sent until the stand-in's answer changes, up to 5 s.
// The checker is ours: the Azure SDK's test-proxy matches a client's requests
// to recordings, it does not hold a server to them (and it is a .NET binary
// downloaded from GitHub releases, which cannot be fetched here).
import t from 'tap'
import { request as httpsRequest } from 'node:https'
import { useServers } from '../helpers/testenv.js'
import { loadRecordings, recordingsDir, header, shapeDiff, errorCodes, challengeParams, entraIdentity, type Recording } from '../helpers/azure-recordings.js'
import { startKeyVaultStandin, TENANT } from '../helpers/keyvault-standin.js'

let recordings: Recording[]
try {
  recordings = loadRecordings()
} catch (err) {
  t.fail((err as Error).message)
  recordings = []
}

if (recordings.length > 0) {
  const { aad } = await useServers(t, ['aad'])
  const kv = await startKeyVaultStandin(aad)
  t.teardown(async () => { await kv.close() })
  const base = `https://localhost:${kv.port}`
  const identity = entraIdentity(aad, TENANT)
  const token = (await identity.credential.getToken('https://vault.azure.net/.default')).token

  interface Answer { status: number, headers: Record<string, string>, text: string }
  const send = async (method: string, url: string, body: unknown, auth: boolean): Promise<Answer> => {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (auth) headers.authorization = `Bearer ${token}`
    let payload: string | undefined
    if (body !== null && body !== undefined && body !== '') {
      payload = typeof body === 'string' ? body : JSON.stringify(body)
      headers['content-type'] = 'application/json'
    }
    if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload))
    return await new Promise<Answer>((resolve, reject) => {
      const req = httpsRequest(url, { method, headers, ca: kv.ca }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(payload)
    })
  }

  const totals: string[] = []
  for (const rec of recordings) {
    await t.test(`replay ${rec.file}`, async (t) => {
      const versions = new Map<string, string>() // recorded version id -> stand-in version id
      let nextLink: string | null | undefined
      let checks = 0
      let passes = 0
      const check = (ok: boolean, what: string): void => {
        checks++
        if (ok) passes++
        t.ok(ok, what)
      }
      let prev: { method: string, uri: string, status: number, got: number } | undefined
      for (const [i, e] of rec.entries.entries()) {
        const recorded = new URL(e.RequestUri)
        const label = `#${i} ${e.RequestMethod} ${recorded.pathname.replace(/\/[0-9a-f]{32}(?=\/|$)/, '/{version}')}`
        let path = recorded.pathname
        for (const [from, to] of versions) path = path.split(from).join(to)
        let url = `${base}${path}${recorded.search}`
        if (recorded.searchParams.has('$skiptoken')) {
          if (typeof nextLink !== 'string') {
            check(false, `${label}: the stand-in gave no nextLink to follow (the service did)`)
            prev = undefined
            continue
          }
          url = nextLink
        }
        const auth = e.StatusCode !== 401
        let a = await send(e.RequestMethod, url, e.RequestBody, auth)
        if (prev !== undefined && prev.method === e.RequestMethod && prev.uri === e.RequestUri && prev.status !== e.StatusCode) {
          const until = Date.now() + 5000
          while (a.status === prev.got && Date.now() < until) {
            await new Promise((resolve) => setTimeout(resolve, 50))
            a = await send(e.RequestMethod, url, e.RequestBody, auth)
          }
        }
        prev = { method: e.RequestMethod, uri: e.RequestUri, status: e.StatusCode, got: a.status }

        check(a.status === e.StatusCode, `${label}: status ${a.status}, the service answers ${e.StatusCode}`)
        if (e.StatusCode === 401) {
          const want = challengeParams(header(e.ResponseHeaders, 'www-authenticate'))
          const got = challengeParams(a.headers['www-authenticate'])
          const same = want !== undefined && got !== undefined &&
            Object.keys(want).sort().join() === Object.keys(got).sort().join() &&
            got.resource === want.resource &&
            /^https:\/\/[^/]+\/[0-9a-f-]{36}$/.test(got.authorization ?? '')
          check(same, `${label}: WWW-Authenticate is a Bearer challenge naming authorization=<authority>/<tenant> and resource=${want?.resource ?? '?'}`)
        }
        const wantType = header(e.ResponseHeaders, 'content-type')?.toLowerCase().replace(/\s+/g, '')
        const gotType = a.headers['content-type']?.toLowerCase().replace(/\s+/g, '')
        check(wantType === gotType, `${label}: Content-Type ${gotType ?? '(none)'}, the service answers ${wantType ?? '(none)'}`)
        let gotBody: unknown = null
        if (a.text !== '') {
          try { gotBody = JSON.parse(a.text) } catch { gotBody = '(not JSON)' }
        }
        const diff = shapeDiff(e.ResponseBody ?? null, gotBody)
        check(diff.length === 0, `${label}: JSON shape${diff.length > 0 ? ` differs: ${diff.join('; ')}` : ''}`)
        if (errorCodes(e.ResponseBody) !== '') {
          check(errorCodes(gotBody) === errorCodes(e.ResponseBody), `${label}: error code ${errorCodes(gotBody) || '(none)'}, the service answers ${errorCodes(e.ResponseBody)}`)
        }

        const wantId = (e.ResponseBody as { id?: unknown } | null)?.id
        const gotId = (gotBody as { id?: unknown } | null)?.id
        if (e.RequestMethod === 'PUT' && typeof wantId === 'string' && typeof gotId === 'string') {
          versions.set(wantId.split('/').at(-1) as string, gotId.split('/').at(-1) as string)
        }
        if (gotBody !== null && typeof gotBody === 'object' && 'nextLink' in gotBody) nextLink = (gotBody as { nextLink: string | null }).nextLink
      }
      t.comment(`${rec.file}: ${checks} checks, ${passes} pass`)
      totals.push(`${rec.file}: ${checks} checks, ${passes} pass`)
    })
  }
  t.comment(`Key Vault stand-in against ${recordings.length} recordings of the real service in ${recordingsDir()}:\n${totals.join('\n')}`)
}
