// The local API token check: exactly the token is 'ok'; no prefix, extension
// or same-length guess is, whatever an earlier request left in the check's
// scratch buffer; an absent or empty token is 'missing'.
import t from 'tap'
import { makeTokenCheck, presentedToken } from '../../agent/access-token.js'

const TOKEN = 'Zm9vYmFyLWJhei1xdXV4LXRoZS10b2tlbi0xMjM0NTY3'

t.test('only the token itself is ok', async (t) => {
  const check = makeTokenCheck(TOKEN)
  t.equal(check(TOKEN), 'ok')
  t.equal(check(undefined), 'missing')
  t.equal(check(''), 'missing')
  t.equal(check(TOKEN.slice(0, -1)), 'wrong', 'a prefix')
  t.equal(check(TOKEN + 'x'), 'wrong', 'the token and more')
  t.equal(check(TOKEN.slice(0, -1) + 'A'), 'wrong', 'same length, last character differs')
  t.equal(check('x' + TOKEN.slice(1)), 'wrong', 'same length, first character differs')
  t.equal(check('x'.repeat(100_000)), 'wrong', 'far longer than any header')
  t.equal(check(TOKEN), 'ok', 'still ok after the long one')
})

t.test('what an earlier request left behind never completes a shorter one', async (t) => {
  const check = makeTokenCheck(TOKEN)
  t.equal(check(TOKEN), 'ok')
  for (let n = 1; n < TOKEN.length; n++) t.equal(check(TOKEN.slice(0, n)), 'wrong', `the first ${n} characters right after the token itself`)
})

t.test('bytes, not characters, are compared (UTF-8 of both sides)', async (t) => {
  const token = 'tökén-ünïcode-𝒳-0123456789'
  const check = makeTokenCheck(token)
  t.equal(check(token), 'ok')
  t.equal(check(token.normalize('NFD')), 'wrong', 'the same text in other bytes')
  // A header value arrives as latin1: the UTF-8 bytes read one char each are not the token.
  t.equal(check(Buffer.from(token, 'utf8').toString('latin1')), 'wrong')
  t.equal(check('tokén-ünïcode-𝒳-0123456789'), 'wrong')
})

t.test('the token from X-Sidekey-Token or Authorization: Bearer', async (t) => {
  t.equal(presentedToken(' abc ', undefined), 'abc')
  t.equal(presentedToken(undefined, 'Bearer abc'), 'abc')
  t.equal(presentedToken(undefined, 'bearer   abc  '), 'abc')
  t.equal(presentedToken(['abc', 'def'], undefined), 'abc')
  t.equal(presentedToken(undefined, 'Basic abc'), undefined)
  t.equal(presentedToken('', 'Bearer abc'), 'abc')
})
