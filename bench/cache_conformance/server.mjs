// The suite's origin server, bound to 127.0.0.1 only (its own server.mjs listens on all addresses).
import http from 'http'
import handleConfig from './node_modules/http-cache-tests/server/handle-config.mjs'
import handleFile from './node_modules/http-cache-tests/server/handle-file.mjs'
import handleState from './node_modules/http-cache-tests/server/handle-state.mjs'
import handleTest from './node_modules/http-cache-tests/server/handle-test.mjs'
const port = parseInt(process.argv[2] || '8000')
const baseUrl = `http://127.0.0.1:${port}/`
function handleMain (request, response) {
  const url = new URL(request.url, baseUrl)
  const pathSegs = url.pathname.split('/')
  pathSegs.shift()
  const dispatch = pathSegs.shift()
  if (dispatch === 'config') handleConfig(pathSegs, request, response)
  else if (dispatch === 'test') handleTest(pathSegs, request, response)
  else if (dispatch === 'state') handleState(pathSegs, request, response)
  else handleFile(url, request, response)
}
const server = http.createServer(handleMain)
server.on('listening', () => console.log(`listening ${server.address().port}`))
server.listen(port, '127.0.0.1')
