// Date strings built from a Date's UTC fields, for the log's time, the JSON
// answers' timestamps and HTTP's Date and Last-Modified headers.
//
// Why not toISOString / toUTCString: on Node 24, V8 formats both through
// ToDateString, which first asks ICU for the local time zone's display name
// (neither string prints it). ICU then reads its time zone name tables, and
// their pages stay resident: `new Date().toISOString()` alone raises a bare
// Node server's RSS from 47.6 to 48.9 MiB (getUTC* fields: 47.8). Node's own
// HTTP Date header is toUTCString, so the servers send their own (a header
// the response has keeps Node from adding one).
//
// The strings are the same as toISOString's and toUTCString's; a year outside
// 0..9999 (and an invalid date) goes to those methods, which print extended
// years and throw the RangeError as before.

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const pad2 = (n: number): string => n < 10 ? `0${n}` : String(n)
const pad3 = (n: number): string => n < 10 ? `00${n}` : n < 100 ? `0${n}` : String(n)
const pad4 = (n: number): string => n < 1000 ? `0${pad3(n)}` : String(n)
const plainYear = (y: number): boolean => y >= 0 && y <= 9999

/** `new Date(ms).toISOString()`: 2026-12-02T08:46:54.123Z. */
export function isoTime (ms: number): string {
  const d = new Date(ms)
  const y = d.getUTCFullYear()
  if (!plainYear(y)) return d.toISOString()
  return `${pad4(y)}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}T${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.${pad3(d.getUTCMilliseconds())}Z`
}

/** `new Date(ms).toUTCString()`, HTTP's IMF-fixdate: Wed, 02 Dec 2026 08:46:54 GMT. */
export function httpDate (ms: number): string {
  const d = new Date(ms)
  const y = d.getUTCFullYear()
  if (!plainYear(y)) return d.toUTCString()
  return `${DAYS[d.getUTCDay()] as string}, ${pad2(d.getUTCDate())} ${MONTHS[d.getUTCMonth()] as string} ${pad4(y)} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} GMT`
}

let nowSecond = -1
let nowText = ''
/** The Date header's value for now; built once a second, like Node's own. */
export function httpDateNow (): string {
  const ms = Date.now()
  const s = Math.floor(ms / 1000)
  if (s !== nowSecond) {
    nowText = httpDate(ms)
    nowSecond = s
  }
  return nowText
}
