import { apiSuite } from './api-suite.ts'

apiSuite('real')
