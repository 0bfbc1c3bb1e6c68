from mercato.migration.sync.process import main

main()
