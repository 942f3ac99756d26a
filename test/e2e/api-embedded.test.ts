import { apiSuite } from './api-suite.ts'

apiSuite('embedded')
