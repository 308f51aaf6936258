// tap's coverage map: which files each test file may cover (tap's `coverage-map` option).
// test/browser.test.ts runs the built demo (dist/, example/) in child processes, which tap would
// otherwise instrument too: it covers nothing, and lib/'s 100% comes from the unit tests.
// test/proxy.test.ts runs lib/ behind an nginx that may be missing (then it is skipped): whether
// nginx is installed must not decide whether lib/ is covered, so it covers nothing either.
// Every other test covers what it loads, as without a map.
const integration = new Set(['test/browser.test.ts', 'test/proxy.test.ts'])

export default function coverageMap (testFile) {
  return integration.has(testFile) ? null : []
}
