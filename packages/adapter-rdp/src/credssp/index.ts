export {
  CredSspClient,
  CredSspError,
  type CredSspOptions,
  LOGON_FAILURES,
  subjectPublicKey,
} from './client.js';
export {
  decodeTSRequest,
  encodeTSRequest,
  MAX_TSREQUEST,
  type TSRequest,
  tsRequestLength,
} from './tsrequest.js';
