import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['node_modules/**', 'data/**', 'web/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error',
        { selector: 'TSEnumDeclaration', message: 'enums are not erasable; use a union of string literals' },
        { selector: 'TSParameterProperty', message: 'parameter properties are not erasable' }],
    },
  },
  // Imports go one way (STYLE.md): services -> core + ports <- adapters. A
  // service imports no adapter, no cluster logic and no other service; the
  // cluster's own logic (src/cluster) only core and ports. wiring.ts joins them.
  ...['gateway', 'storage-node', 'replicator', 'worker'].map((svc) => ({
    files: [`src/services/${svc}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['**/adapters/**', '**/cluster/**', '**/wiring.ts', '**/cli/**', '**/services/**'], message: 'services import core and ports only; wiring.ts picks adapters' },
          { group: ['../*/**', '!../../**'], message: 'no service imports another service' },
        ],
      }],
    },
  })),
  {
    files: ['src/cluster/**/*.ts', 'src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['**/adapters/**', '**/services/**', '**/wiring.ts', '**/cli/**'], message: 'core and cluster logic import only core and ports' }],
      }],
    },
  },
)
