// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Type-aware linting (typescript-eslint's recommended rules); Prettier formats. Run by `npm run lint` and .ci/run. */
export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'src/generated/', '**/*.generated.ts', 'test/artifacts/', '.vitest-tmp/', 'src/cli/bin.js'] },
  eslint.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  { languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname } } },
);
