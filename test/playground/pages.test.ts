// The pages served at GET / (the chat) and GET /complete (the completion playground), in one
// headless Chromium launched once for both suites.
import { closeSharedBrowser } from '../helpers/browser.js';
import './chat-page.js';
import './completion-page.js';

after(() => closeSharedBrowser());
