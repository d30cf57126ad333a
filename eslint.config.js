// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Type-aware linting (typescript-eslint's recommended rules); Prettier formats. Run by `npm run lint` and .ci/run. */
export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'src/generated/', '**/*.generated.ts', 'test/artifacts/', '.vitest-tmp/', 'src/cli/bin.js'] },
  eslint.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  { languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname } } },
  // `const { omitted: _, ...rest } = row` is how a property is left out of a copy.
  { rules: { '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }] } },
  {
    // Tests compare parsed JSON bodies (`any` from JSON.parse and Response#json) against vitest's
    // asymmetric matchers (`expect.any`, `expect.objectContaining`: typed `any` by vitest). The
    // assertion is what checks their shape; typing each body first would restate it.
    files: ['test/**'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
