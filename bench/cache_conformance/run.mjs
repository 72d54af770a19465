// Run the suite through a forward proxy: absolute-form request targets sent to the proxy.
import http from 'http'
import fetch from 'node-fetch'
import { runTests, getResults } from './node_modules/http-cache-tests/client/runner.mjs'
import { determineTestResult } from './node_modules/http-cache-tests/lib/display.mjs'
import tests from './node_modules/http-cache-tests/tests/index.mjs'

const [base, proxyPort, only] = process.argv.slice(2)
class ForwardAgent extends http.Agent {
  addRequest (req, options) {
    req.path = `http://${options.host}:${options.port}${req.path}`
    super.addRequest(req, { ...options, host: '127.0.0.1', port: parseInt(proxyPort) })
  }
}
const agent = new ForwardAgent({ keepAlive: true })
const myFetch = (url, init) => fetch(url, { ...init, agent })
let toRun = tests
if (only) {
  toRun = tests.map(s => ({ ...s, tests: s.tests.filter(t => t.id === only) })).filter(s => s.tests.length)
  toRun.forEach(s => s.tests.forEach(t => { t.dump = true }))
}
await runTests(toRun, myFetch, false, base)
const results = getResults()
const counts = {}
for (const suite of toRun) {
  for (const test of suite.tests) {
    const r = determineTestResult(tests, test.id, results)
    const key = `${test.kind || 'required'}:${r[2]}`
    counts[key] = (counts[key] || 0) + 1
    if (r[2] !== '✅' && r[2] !== 'Y' && r[2] !== 'N') {
      const detail = results[test.id] === true ? '' : JSON.stringify(results[test.id])
      console.log(`${r[2]} ${test.kind || 'required'} ${suite.id}/${test.id} ${detail}`)
    }
  }
}
console.log(JSON.stringify(counts, null, 1))
