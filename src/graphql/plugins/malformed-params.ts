import type { Plugin } from 'graphql-yoga';
import { errors } from '../../errors.js';

/**
 * yoga reads `variables` and `extensions` of a GET (and of a form-encoded POST) with a bare
 * `JSON.parse`, so `?variables=%7B` failed as a server fault: 500, and a stack trace logged at error
 * level on every such request. It is the client's malformed request, as the same JSON in a POST body
 * already is: 400 BAD_USER_INPUT, nothing logged.
 */
export function useMalformedParamsRefused(): Plugin {
  return {
    onRequestParse: ({ requestParser, setRequestParser }) => {
      if (!requestParser) return;
      setRequestParser(async (request) => {
        try {
          return await requestParser(request);
        } catch (error) {
          if (error instanceof SyntaxError)
            throw errors.malformedRequest('"variables" and "extensions" must be JSON objects; this request\'s are not valid JSON.');
          throw error;
        }
      });
    },
  };
}
