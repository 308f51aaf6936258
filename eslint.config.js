// The lint and format rules of fastify's own repositories: neostandard (standard style for
// TypeScript, formatting through @stylistic), run by `npm run lint` inside `npm test`.
import neostandard, { resolveIgnoresFromGitignore } from 'neostandard'
import globals from 'globals'

export default [
  ...neostandard({
    ts: true,
    ignores: [...resolveIgnoresFromGitignore(), '.ci/**', 'coverage/**']
  }),
  {
    rules: {
      // `void promise` as a statement marks a promise deliberately not awaited (its errors are
      // handled inside); as an expression it stays an error.
      'no-void': ['error', { allowAsStatement: true }]
    }
  },
  {
    // Type tests declare values only to take their type.
    files: ['types/**/*.ts'],
    rules: { '@typescript-eslint/no-unused-vars': 'off' }
  },
  {
    // The demo's page runs in the browser.
    files: ['example/public/**/*.js'],
    languageOptions: { globals: globals.browser }
  }
]
