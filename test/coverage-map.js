// tap's coverage map: which files each test file may cover (tap's `coverage-map` option).
// test/browser.test.ts runs the built demo (dist/, example/) in child processes, which tap would
// otherwise instrument too: it covers nothing, and lib/'s 100% comes from the unit tests.
// Every other test covers what it loads, as without a map.
export default function coverageMap (testFile) {
  return testFile === 'test/browser.test.ts' ? null : []
}
