// Runs the Python client's pytest suite (clients/python/tests) against a real
// agent the suite starts from dist/. Fails when pytest fails or is missing;
// pytest's summary line is printed as a tap comment so it shows in the log.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

const REPO = join(import.meta.dirname, '..', '..', '..')
const PY = process.env.SIDEKEY_PYTHON ?? 'python3'

const probe = spawnSync(PY, ['-m', 'pytest', '--version'], { encoding: 'utf8' })
if (probe.status !== 0) {
  t.fail(`pytest is not available for ${PY} (${(probe.stderr || probe.error?.message || '').trim().split('\n').pop() ?? ''}); install it with \`${PY} -m pip install pytest\` (scripts/ci-prereqs does)`)
} else {
  t.test('clients/python: pytest against a real agent', async (t) => {
    const start = Date.now()
    const r = spawnSync(PY, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-o', 'console_output_style=classic', 'tests'], {
      cwd: join(REPO, 'clients', 'python'),
      encoding: 'utf8',
      env: { ...process.env, SIDEKEY_REPO: REPO, PYTHONDONTWRITEBYTECODE: '1' },
      timeout: 300_000,
    })
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`
    const summary = out.trim().split('\n').filter((l) => /\b(passed|failed|error)/.test(l)).pop() ?? '(no summary)'
    t.comment(`pytest clients/python: ${summary} [${Date.now() - start} ms]`)
    const counts = Object.fromEntries([...summary.matchAll(/(\d+) (passed|failed|errors?|skipped)/g)].map((m) => [m[2], Number(m[1])]))
    t.equal(r.status, 0, `pytest exits 0\n${r.status === 0 ? '' : out.slice(-4000)}`)
    t.ok((counts.passed ?? 0) > 0, 'pytest ran tests')
    t.equal(counts.skipped ?? 0, 0, 'no test skipped')
  })
}
